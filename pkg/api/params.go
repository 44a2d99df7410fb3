package api

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// StorageClass parameters of a dots volume. They arrive in every
// CreateVolume; the controller reads ParamServer for placement and the
// storage server applies the rest.
const (
	ParamServer      = "server"
	ParamThick       = "thick"
	ParamCompression = "compression"
	ParamRecordSize  = "recordsize"
	ParamAtime       = "atime"
	ParamSync        = "sync"
	// Export access and root ownership (see Access).
	ParamSquash  = "squash"
	ParamAnonUID = "anonUID"
	ParamAnonGID = "anonGID"
	ParamUID     = "uid"
	ParamGID     = "gid"
	ParamMode    = "mode"
)

// kubernetesPrefix marks the keys the external-provisioner adds with
// --extra-create-metadata (PVC name, namespace, PV name): informational.
const kubernetesPrefix = "csi.storage.k8s.io/"

// zfsParams are passed to ZFS as they are; the server checks their values.
var zfsParams = []string{ParamCompression, ParamRecordSize, ParamAtime, ParamSync}

// knownParams, for the error that names them.
var knownParams = append([]string{ParamServer, ParamThick, ParamSquash, ParamAnonUID, ParamAnonGID, ParamUID, ParamGID, ParamMode, ParamReplicas, ParamReplicationInterval}, zfsParams...)

// Params is a parsed parameter set.
type Params struct {
	Server     string            // pin the volume to this server; "" places it
	Thick      bool              // reserve the whole capacity up front
	Properties map[string]string // ZFS tunables, values unchecked
	Access     Access            // squashing and root ownership
	// Replicas counts the volume's copies, the primary included (1: none);
	// ReplicationInterval is how often the primary sends increments.
	Replicas            int
	ReplicationInterval time.Duration
}

// ParseParams checks a parameter map. Unknown keys are refused, so a typo
// in a StorageClass fails the first claim instead of being ignored; keys
// the external-provisioner adds are accepted and ignored. Errors wrap
// ErrInvalid.
func ParseParams(in map[string]string) (Params, error) {
	p := Params{Properties: map[string]string{}, Access: Access{AnonUID: DefaultAnonID, AnonGID: DefaultAnonID},
		Replicas: 1, ReplicationInterval: DefaultReplicationInterval}
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := in[k]
		switch {
		case strings.HasPrefix(k, kubernetesPrefix):
		case k == ParamServer:
			if v == "" {
				return p, fmt.Errorf("%w: parameter %q is empty", ErrInvalid, k)
			}
			p.Server = v
		case k == ParamThick:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return p, fmt.Errorf("%w: parameter %s=%q: want true or false", ErrInvalid, k, v)
			}
			p.Thick = b
		case k == ParamSquash:
			sq, err := parseSquash(v)
			if err != nil {
				return p, err
			}
			p.Access.Squash = sq
		case k == ParamAnonUID, k == ParamAnonGID, k == ParamUID, k == ParamGID:
			id, err := parseID(k, v)
			if err != nil {
				return p, err
			}
			switch k {
			case ParamAnonUID:
				p.Access.AnonUID = id
			case ParamAnonGID:
				p.Access.AnonGID = id
			case ParamUID:
				p.Access.UID = &id
			default:
				p.Access.GID = &id
			}
		case k == ParamMode:
			m, err := ParseMode(v)
			if err != nil {
				return p, err
			}
			p.Access.Mode = &m
		case k == ParamReplicas:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxReplicas {
				return p, fmt.Errorf("%w: parameter %s=%q: want a whole number of copies from 1 to %d (the primary included)", ErrInvalid, k, v, MaxReplicas)
			}
			p.Replicas = n
		case k == ParamReplicationInterval:
			d, err := time.ParseDuration(v)
			if err != nil || d < MinReplicationInterval {
				return p, fmt.Errorf("%w: parameter %s=%q: want a duration of at least %s (e.g. 10s)", ErrInvalid, k, v, MinReplicationInterval)
			}
			p.ReplicationInterval = d
		case slices.Contains(zfsParams, k):
			if v == "" {
				return p, fmt.Errorf("%w: parameter %q is empty", ErrInvalid, k)
			}
			p.Properties[k] = v
		default:
			return p, fmt.Errorf("%w: unknown parameter %q (known: %s)", ErrInvalid, k, strings.Join(knownParams, ", "))
		}
	}
	return p, nil
}

// WithoutServer returns the parameters minus those of placement
// (ParamServer) and replication (ParamReplicas, ParamReplicationInterval):
// what the controller forwards to the server it chose. Replication reaches
// a server as SetReplicas, never as a create's parameter.
func WithoutServer(in map[string]string) map[string]string {
	out := maps.Clone(in)
	delete(out, ParamServer)
	delete(out, ParamReplicas)
	delete(out, ParamReplicationInterval)
	return out
}
