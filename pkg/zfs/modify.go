package zfs

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
)

// Modification is what ModifyVolume changes on a live volume; what it
// leaves nil or empty stays as it is.
type Modification struct {
	// Thick, when set, reserves the volume's capacity (refreservation =
	// refquota) or releases the reservation.
	Thick *bool
	// Properties are tunables, checked against the allow-list.
	Properties map[string]string
	// Squash, AnonUID and AnonGID, when set, change how the volume is
	// exported (recorded in dots:squash and dots:anon; the caller
	// re-exports).
	Squash           *api.Squash
	AnonUID, AnonGID *uint32
}

// propChange is one property ModifyVolume sets, with what undoes it.
type propChange struct {
	key, value string
	old        string // "": the property was not set locally; undone by inheriting
}

// ModifyVolume changes a live volume's tunables, reservation and recorded
// squashing, and returns the volume as it now is. Properties that already hold the asked
// values are left alone, so a repeated call changes nothing.
//
// Atomicity: where the flavour sets several properties in one command
// (OpenZFS), the change is one transaction: all or nothing. zfs-fuse sets
// one property per command: ModifyVolume sets them one by one, the
// reservation first (the step most likely to fail, for space), and when a
// step fails it sets back those already changed. What zfs-fuse cannot
// give: a reader between two steps sees some of the new values, and an
// undo that fails too (the pool lost, the daemon gone) leaves the volume
// partly changed; the index then holds what the pool says, and a retry of
// the same request converges.
func (p *Pool) ModifyVolume(ctx context.Context, name string, m Modification) (*Volume, error) {
	if err := api.ValidateID(name); err != nil {
		return nil, err
	}
	props, err := ValidateProperties(m.Properties)
	if err != nil {
		return nil, err
	}
	v, err := p.GetVolume(ctx, name)
	if err != nil {
		return nil, err
	}
	var changes []propChange
	done := func(bool) {}
	if m.Thick != nil {
		if *m.Thick && (!v.Thick || v.Reserved < v.Capacity) {
			// What the create's check asks of a thick volume, less what
			// the volume already holds.
			done, err = p.takeSpace(v.Capacity-v.Reserved, true, fmt.Sprintf("reserving volume %q", name))
			if err != nil {
				return nil, err
			}
			changes = append(changes,
				propChange{key: propRefreservation, value: strconv.FormatInt(v.Capacity, 10), old: reservedValue(v.Reserved)},
				propChange{key: propThick, value: "true", old: strconv.FormatBool(v.Thick)})
		}
		if !*m.Thick && (v.Thick || v.Reserved > 0) {
			changes = append(changes,
				propChange{key: propRefreservation, value: "none", old: reservedValue(v.Reserved)},
				propChange{key: propThick, value: "false", old: strconv.FormatBool(v.Thick)})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if v.Properties[k] != props[k] {
			changes = append(changes, propChange{key: k, value: props[k], old: v.Properties[k]})
		}
	}
	squash, uid, gid := v.Squash, v.AnonUID, v.AnonGID
	if m.Squash != nil {
		switch squash = *m.Squash; squash {
		case api.SquashNone, api.SquashRoot, api.SquashAll:
		default:
			return nil, fmt.Errorf("%w: squash=%q: want none, root or all", ErrInvalid, squash)
		}
		if squash != v.Squash {
			changes = append(changes, propChange{key: propSquash, value: string(squash), old: string(v.Squash)})
		}
	}
	if m.AnonUID != nil {
		uid = *m.AnonUID
	}
	if m.AnonGID != nil {
		gid = *m.AnonGID
	}
	if uid != v.AnonUID || gid != v.AnonGID {
		changes = append(changes, propChange{key: propAnon, value: fmt.Sprintf("%d:%d", uid, gid),
			old: fmt.Sprintf("%d:%d", v.AnonUID, v.AnonGID)})
	}
	if len(changes) == 0 {
		klog.V(4).InfoS("Modify: nothing to change", "volume", name)
		return v, nil
	}
	err = p.applyChanges(ctx, v.Dataset, changes)
	done(err == nil)
	if err != nil {
		// Whatever the undo left is what the index must hold.
		if rv, rerr := p.readVolume(ctx, name); rerr == nil {
			p.index.putVolume(rv)
		}
		return nil, fmt.Errorf("volume %q: %w", name, err)
	}
	nv, ok := p.index.updateVolume(name, func(v *Volume) {
		for _, c := range changes {
			switch c.key {
			case propRefreservation:
				v.Reserved, _ = strconv.ParseInt(c.value, 10, 64) // "none" is 0
			case propThick:
				v.Thick = c.value == "true"
			case propSquash:
				v.Squash = squash
			case propAnon:
				v.AnonUID, v.AnonGID = uid, gid
			default:
				v.Properties[c.key] = c.value
			}
		}
	})
	if !ok {
		return nil, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	klog.InfoS("Modified volume", "pool", p.name, "volume", name, "thick", nv.Thick, "properties", nv.Properties,
		"squash", nv.Squash, "anonUID", nv.AnonUID, "anonGID", nv.AnonGID)
	return nv, nil
}

// reservedValue is a refreservation as `zfs set` takes it back.
func reservedValue(n int64) string {
	if n == 0 {
		return "none"
	}
	return strconv.FormatInt(n, 10)
}

// applyChanges sets changes in one command where the flavour can; else one
// by one, undoing the ones applied when a later one fails.
func (p *Pool) applyChanges(ctx context.Context, ds string, changes []propChange) error {
	if p.flavor.AtomicMultiSet {
		set := make(map[string]string, len(changes))
		for _, c := range changes {
			set[c.key] = c.value
		}
		return p.zfsSet(ctx, ds, set)
	}
	for i, c := range changes {
		err := p.zfsSet(ctx, ds, map[string]string{c.key: c.value})
		if err == nil {
			continue
		}
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		for j := i - 1; j >= 0; j-- {
			u := changes[j]
			undo := func() error {
				if u.old == "" {
					return p.zfsInherit(cctx, ds, u.key)
				}
				return p.zfsSet(cctx, ds, map[string]string{u.key: u.old})
			}
			if uerr := p.spacious(cctx, undo); uerr != nil {
				klog.ErrorS(uerr, "Undoing a property of a failed modify", "dataset", ds, "property", u.key, "value", u.old)
				return fmt.Errorf("%w (and undoing %s failed: %v)", err, u.key, uerr)
			}
		}
		return err
	}
	return nil
}
