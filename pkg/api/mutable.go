package api

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// MutableParams are the parameters ControllerModifyVolume may change on a
// live volume (a VolumeAttributesClass's parameters): the ZFS tunables and
// thick, which ZFS changes in place, and the squashing, which the server
// re-exports. Tunable values are checked by the server, as for
// CreateVolume.
var MutableParams = []string{ParamAnonGID, ParamAnonUID, ParamAtime, ParamCompression, ParamRecordSize, ParamSquash, ParamSync, ParamThick}

// Mutable is a parsed set of mutable parameters.
type Mutable struct {
	// Thick, when set, reserves the volume's whole capacity (true) or
	// releases its reservation (false).
	Thick *bool
	// Properties are ZFS tunables to set, values unchecked.
	Properties map[string]string
	// Squash, AnonUID and AnonGID, when set, change how the volume is
	// exported.
	Squash           *Squash
	AnonUID, AnonGID *uint32
}

// ChangesAccess says whether m changes how the volume is exported.
func (m Mutable) ChangesAccess() bool {
	return m.Squash != nil || m.AnonUID != nil || m.AnonGID != nil
}

// immutableWhy says why a known parameter cannot change on a live volume.
var immutableWhy = map[string]string{
	ParamServer: "moving a volume to another server needs replicas or drain, which dots does not have yet",
	ParamUID:    "it sets the owner of a new volume's root directory at creation only",
	ParamGID:    "it sets the group of a new volume's root directory at creation only",
	ParamMode:   "it sets the mode of a new volume's root directory at creation only",
}

// ParseMutableParams checks the mutable_parameters of a ModifyVolume (or a
// CreateVolume naming a VolumeAttributesClass): unknown keys, keys that
// cannot change on a live volume and malformed thick values are refused,
// wrapping ErrInvalid, so nothing is changed by a request that is partly
// wrong. Keys the Kubernetes sidecars add are ignored.
func ParseMutableParams(in map[string]string) (Mutable, error) {
	m := Mutable{Properties: map[string]string{}}
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := in[k]
		switch {
		case strings.HasPrefix(k, kubernetesPrefix):
		case k == ParamThick:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return m, fmt.Errorf("%w: mutable parameter %s=%q: want true or false", ErrInvalid, k, v)
			}
			m.Thick = &b
		case k == ParamSquash:
			sq, err := parseSquash(v)
			if err != nil {
				return m, err
			}
			m.Squash = &sq
		case k == ParamAnonUID, k == ParamAnonGID:
			id, err := parseID(k, v)
			if err != nil {
				return m, err
			}
			if k == ParamAnonUID {
				m.AnonUID = &id
			} else {
				m.AnonGID = &id
			}
		case slices.Contains(zfsParams, k):
			if v == "" {
				return m, fmt.Errorf("%w: mutable parameter %q is empty", ErrInvalid, k)
			}
			m.Properties[k] = v
		case immutableWhy[k] != "":
			return m, fmt.Errorf("%w: parameter %q cannot change on a live volume: %s (mutable: %s)",
				ErrInvalid, k, immutableWhy[k], strings.Join(MutableParams, ", "))
		default:
			return m, fmt.Errorf("%w: unknown mutable parameter %q (mutable: %s)", ErrInvalid, k, strings.Join(MutableParams, ", "))
		}
	}
	return m, nil
}

// Apply lays mutable parameters over a creation's parameters: a
// VolumeAttributesClass named at creation wins over the StorageClass.
func (m Mutable) Apply(p *Params) {
	for k, v := range m.Properties {
		p.Properties[k] = v
	}
	if m.Thick != nil {
		p.Thick = *m.Thick
	}
	if m.Squash != nil {
		p.Access.Squash = *m.Squash
	}
	if m.AnonUID != nil {
		p.Access.AnonUID = *m.AnonUID
	}
	if m.AnonGID != nil {
		p.Access.AnonGID = *m.AnonGID
	}
}

// ContextParamPrefix starts the volume context keys that report a volume's
// mutable parameters as they are now ("dots.csi.dev/param.compression").
// Like ContextUsedBytes, servers put them in ListVolumes and
// ControllerGetVolume answers only: they change, and a PV must not record
// them.
const ContextParamPrefix = "dots.csi.dev/param."
