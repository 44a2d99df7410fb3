// Package discovery tells the controller which storage servers exist and how
// to reach them: by API address (gRPC) and by NFS address (the stable VIP
// that nodes mount from).
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/dots-csi/dots/pkg/api"
)

// ErrInvalid reports a malformed server description.
var ErrInvalid = errors.New("invalid server description")

// Server is one storage server.
type Server struct {
	// Name is stable for the life of the server (a StatefulSet pod name);
	// it is part of every volume ID on that server.
	Name string `json:"name"`
	// APIAddress is host:port of the server's gRPC API.
	APIAddress string `json:"apiAddress"`
	// NFSAddress is the host or IP nodes mount from.
	NFSAddress string `json:"nfsAddress"`
	// NFSPort is the NFS port; 0 means the standard 2049.
	NFSPort int `json:"nfsPort,omitempty"`
	// LocalPaths says the server's dataset mountpoints are visible on this
	// machine (the single-machine local stack only).
	LocalPaths bool `json:"localPaths,omitempty"`
}

// Source lists the servers. It is asked again periodically, so a source
// backed by DNS or the Kubernetes API picks up servers added by scaling.
type Source interface {
	Servers(ctx context.Context) ([]Server, error)
}

// validateName checks a server name (see api.ValidateServerName).
func validateName(name string) error {
	if err := api.ValidateServerName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// Validate checks one server description.
func (s Server) Validate() error {
	if err := validateName(s.Name); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(s.APIAddress); err != nil {
		return fmt.Errorf("%w: server %s: api address %q is not host:port", ErrInvalid, s.Name, s.APIAddress)
	}
	if s.NFSAddress == "" || strings.ContainsAny(s.NFSAddress, " /,:") && net.ParseIP(s.NFSAddress) == nil {
		return fmt.Errorf("%w: server %s: nfs address %q is not a host name or IP", ErrInvalid, s.Name, s.NFSAddress)
	}
	if s.NFSPort < 0 || s.NFSPort > 65535 {
		return fmt.Errorf("%w: server %s: nfs port %d out of range", ErrInvalid, s.Name, s.NFSPort)
	}
	return nil
}

// ValidateAll checks every server and that names are unique.
func ValidateAll(servers []Server) error {
	seen := map[string]bool{}
	for _, s := range servers {
		if err := s.Validate(); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("%w: server name %q listed twice", ErrInvalid, s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// Static is a fixed list of servers.
type Static []Server

// Servers returns a copy of the list, sorted by name.
func (s Static) Servers(context.Context) ([]Server, error) {
	out := append([]Server(nil), s...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// File reads the server list from a JSON file each time it is asked, so a
// mounted ConfigMap that changes is picked up without a restart.
type File string

// Servers reads and validates the file.
func (f File) Servers(context.Context) ([]Server, error) {
	data, err := os.ReadFile(string(f))
	if err != nil {
		return nil, err
	}
	var servers []Server
	if err := json.Unmarshal(data, &servers); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, f, err)
	}
	if err := ValidateAll(servers); err != nil {
		return nil, fmt.Errorf("%s: %w", f, err)
	}
	return Static(servers).Servers(context.Background())
}

// ParseFlag parses "name=N,api=HOST:PORT,nfs=ADDR[,nfs-port=P][,local-paths=true]".
func ParseFlag(value string) (Server, error) {
	var s Server
	for _, kv := range strings.Split(value, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return s, fmt.Errorf("%w: %q: want key=value pairs", ErrInvalid, kv)
		}
		switch k {
		case "name":
			s.Name = v
		case "api":
			s.APIAddress = v
		case "nfs":
			s.NFSAddress = v
		case "nfs-port":
			p, err := strconv.Atoi(v)
			if err != nil {
				return s, fmt.Errorf("%w: nfs-port %q", ErrInvalid, v)
			}
			s.NFSPort = p
		case "local-paths":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return s, fmt.Errorf("%w: local-paths %q", ErrInvalid, v)
			}
			s.LocalPaths = b
		default:
			return s, fmt.Errorf("%w: unknown key %q (want name, api, nfs, nfs-port, local-paths)", ErrInvalid, k)
		}
	}
	return s, s.Validate()
}
