// Package driver is the dots CSI driver as Kubernetes sees it: the Identity
// and Controller services of the cluster-wide controller, which routes every
// call to the storage server holding the volume, and the Node service that
// mounts volumes on each node.
package driver

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/version"
)

// Readiness says whether the plugin can serve; nil means always ready.
type Readiness = health.Check

// IdentityServer answers the CSI Identity service.
type IdentityServer struct {
	csi.UnimplementedIdentityServer
	controller bool
	ready      Readiness
}

// NewIdentityServer returns the identity of a controller (controller true,
// advertising the controller service) or a node plugin.
func NewIdentityServer(controller bool, ready Readiness) *IdentityServer {
	return &IdentityServer{controller: controller, ready: ready}
}

// GetPluginInfo returns the driver name and version.
func (s *IdentityServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: version.DriverName, VendorVersion: version.Version}, nil
}

// GetPluginCapabilities advertises the controller service where it runs.
func (s *IdentityServer) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	if !s.controller {
		return &csi.GetPluginCapabilitiesResponse{}, nil
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: api.PluginCapabilities()}, nil
}

// Probe reports readiness: for the controller, at least one storage server
// must answer.
func (s *IdentityServer) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			return nil, fmt.Errorf("%w: %v", api.ErrNotReady, err)
		}
	}
	return &csi.ProbeResponse{}, nil
}
