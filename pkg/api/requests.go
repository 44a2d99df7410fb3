package api

import (
	"fmt"
	"maps"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// SourceKind says what a new volume is made from.
type SourceKind string

const (
	SourceNone     SourceKind = ""
	SourceSnapshot SourceKind = "snapshot"
	SourceVolume   SourceKind = "volume"
)

// Source is a CreateVolume's content source, with the ID as the request
// gave it (a cluster ID at the controller, a server's own ID at a server).
type Source struct {
	Kind SourceKind
	ID   string
}

// CreateVolume is a CreateVolume request that passed the checks the
// controller and every server share.
type CreateVolume struct {
	Name     string // the request's name
	ID       string // IDFor(Name): what the server stores it under
	Capacity int64  // resolved and rounded size in bytes
	// DefaultCapacity is true when the request asked for no size, so
	// Capacity is the default.
	DefaultCapacity bool
	Params          Params
	Source          Source
}

// ParseCreateVolume runs the checks of a CreateVolume request shared by the
// controller and the servers: name, capabilities, parameters (with the
// mutable parameters of a VolumeAttributesClass laid over them), size (def
// when the request names none) and content source.
func ParseCreateVolume(req *csi.CreateVolumeRequest, def int64) (CreateVolume, error) {
	var cv CreateVolume
	if err := Required("name", req.GetName()); err != nil {
		return cv, err
	}
	if err := ValidateName(req.GetName()); err != nil {
		return cv, err
	}
	if err := ValidateCapabilities(req.GetVolumeCapabilities()); err != nil {
		return cv, err
	}
	p, err := ParseParams(req.GetParameters())
	if err != nil {
		return cv, err
	}
	m, err := ParseMutableParams(req.GetMutableParameters())
	if err != nil {
		return cv, err
	}
	m.Apply(&p)
	size, err := ResolveCapacity(req.GetCapacityRange(), def)
	if err != nil {
		return cv, err
	}
	src, err := sourceOf(req.GetVolumeContentSource())
	if err != nil {
		return cv, err
	}
	return CreateVolume{Name: req.GetName(), ID: IDFor(req.GetName()), Capacity: size,
		DefaultCapacity: NoCapacityRange(req.GetCapacityRange()), Params: p, Source: src}, nil
}

func sourceOf(src *csi.VolumeContentSource) (Source, error) {
	switch {
	case src == nil:
		return Source{}, nil
	case src.GetSnapshot() != nil:
		id := src.GetSnapshot().GetSnapshotId()
		return Source{Kind: SourceSnapshot, ID: id}, Required("volume_content_source.snapshot.snapshot_id", id)
	case src.GetVolume() != nil:
		id := src.GetVolume().GetVolumeId()
		return Source{Kind: SourceVolume, ID: id}, Required("volume_content_source.volume.volume_id", id)
	}
	return Source{}, fmt.Errorf("%w: volume_content_source names neither a snapshot nor a volume", ErrInvalid)
}

// Required checks that a request field is set.
func Required(field, value string) error {
	if value == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	}
	return nil
}

// Confirm answers ValidateVolumeCapabilities for a volume known to exist:
// confirmed when dots serves the capabilities and parameters, otherwise a
// message saying why not.
func Confirm(req *csi.ValidateVolumeCapabilitiesRequest) *csi.ValidateVolumeCapabilitiesResponse {
	if err := ValidateCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}
	}
	if _, err := ParseParams(req.GetParameters()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         maps.Clone(req.GetParameters()),
		MutableParameters:  req.GetMutableParameters(),
	}}
}
