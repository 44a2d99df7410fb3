// Package params parses the StorageClass parameters of a dots volume. They
// arrive in every CreateVolume; the controller reads "server" for placement
// and the storage server applies the rest.
package params

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ErrInvalid reports an unknown parameter or a bad value.
var ErrInvalid = errors.New("invalid parameter")

// Parameter names accepted in a StorageClass.
const (
	Server      = "server"
	Thick       = "thick"
	Compression = "compression"
	RecordSize  = "recordsize"
	Atime       = "atime"
	Sync        = "sync"
)

// kubernetesPrefix marks the keys the external-provisioner adds with
// --extra-create-metadata (PVC name, namespace, PV name): informational.
const kubernetesPrefix = "csi.storage.k8s.io/"

// zfsProperties are passed to ZFS as they are; pkg/zfs checks their values.
var zfsProperties = []string{Compression, RecordSize, Atime, Sync}

// Params is the parsed parameter set.
type Params struct {
	Server     string            // pin the volume to this server; "" places it
	Thick      bool              // reserve the whole capacity up front
	Properties map[string]string // ZFS tunables
}

// Parse validates the parameters. Unknown keys are refused rather than
// ignored, so a typo in a StorageClass fails loudly at the first PVC.
func Parse(in map[string]string) (Params, error) {
	p := Params{Properties: map[string]string{}}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := in[k]
		switch {
		case strings.HasPrefix(k, kubernetesPrefix):
		case k == Server:
			if v == "" {
				return p, fmt.Errorf("%w: %q is empty", ErrInvalid, k)
			}
			p.Server = v
		case k == Thick:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return p, fmt.Errorf("%w: %s=%q: want true or false", ErrInvalid, k, v)
			}
			p.Thick = b
		case isZFSProperty(k):
			if v == "" {
				return p, fmt.Errorf("%w: %q is empty", ErrInvalid, k)
			}
			p.Properties[k] = v
		default:
			return p, fmt.Errorf("%w: unknown parameter %q (known: %s, %s, %s)", ErrInvalid, k, Server, Thick, strings.Join(zfsProperties, ", "))
		}
	}
	return p, nil
}

func isZFSProperty(k string) bool {
	for _, z := range zfsProperties {
		if k == z {
			return true
		}
	}
	return false
}

// WithoutServer returns a copy of in without the placement key, for
// forwarding to the chosen server.
func WithoutServer(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		if k != Server {
			out[k] = v
		}
	}
	return out
}
