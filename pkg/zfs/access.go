package zfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
)

// Properties holding how a volume is exported. They live on the pool, like
// everything else, so a restarted or moved server exports each volume to
// the same nodes with the same squashing.
const (
	propSquash    = "dots:squash"    // none, root or all; absent: the server's default
	propAnon      = "dots:anon"      // UID:GID squashed users become
	propPublished = "dots:published" // the nodes the volume is published to
)

// ErrTooManyNodes: a volume is published to more nodes than its record
// holds.
var ErrTooManyNodes = errors.New("published to too many nodes")

// maxPublishedLen keeps dots:published inside ZFS's limit on a user
// property's value (8 KiB), with room to spare: a few hundred nodes.
const maxPublishedLen = 7 << 10

// roSuffix marks a read-only publication in dots:published.
const roSuffix = "#ro"

// Publication is one node a volume is published to.
type Publication struct {
	Node     string // the node ID, as the node plugin reported it
	ReadOnly bool
}

// accessProps are the create-time properties of spec's access.
func accessProps(a *api.Access) map[string]string {
	if a == nil || a.Squash == api.SquashDefault {
		return nil
	}
	return map[string]string{
		propSquash: string(a.Squash),
		propAnon:   fmt.Sprintf("%d:%d", a.AnonUID, a.AnonGID),
	}
}

// readAccess fills a volume's access fields from its properties.
func readAccess(v *Volume, p dsProps) error {
	switch s := api.Squash(p.localStr(propSquash)); s {
	case api.SquashDefault, api.SquashNone, api.SquashRoot, api.SquashAll:
		v.Squash = s
	default:
		return fmt.Errorf("%w: %s=%q", ErrInvalid, propSquash, s)
	}
	v.AnonUID, v.AnonGID = api.DefaultAnonID, api.DefaultAnonID
	if s := p.localStr(propAnon); s != "" {
		u, g, _ := strings.Cut(s, ":")
		uid, err1 := strconv.ParseUint(u, 10, 32)
		gid, err2 := strconv.ParseUint(g, 10, 32)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%w: %s=%q", ErrInvalid, propAnon, s)
		}
		v.AnonUID, v.AnonGID = uint32(uid), uint32(gid)
	}
	pubs, err := parsePublished(p.localStr(propPublished))
	if err != nil {
		return err
	}
	v.Published = pubs
	return nil
}

func parsePublished(s string) ([]Publication, error) {
	var out []Publication
	for _, f := range strings.Fields(s) {
		node, ro := strings.CutSuffix(f, roSuffix)
		if _, err := api.ParseNodeID(node); err != nil {
			return nil, fmt.Errorf("%s: %w", propPublished, err)
		}
		out = append(out, Publication{Node: node, ReadOnly: ro})
	}
	return out, nil
}

func formatPublished(pubs []Publication) string {
	fields := make([]string, len(pubs))
	for i, p := range pubs {
		fields[i] = p.Node
		if p.ReadOnly {
			fields[i] += roSuffix
		}
	}
	slices.Sort(fields)
	return strings.Join(fields, " ")
}

// SetPublished records the nodes a live volume is published to, replacing
// the previous list, and returns the volume as it now is.
func (p *Pool) SetPublished(ctx context.Context, name string, pubs []Publication) (*Volume, error) {
	for _, pub := range pubs {
		if _, err := api.ParseNodeID(pub.Node); err != nil {
			return nil, err
		}
	}
	val := formatPublished(pubs)
	if len(val) > maxPublishedLen {
		return nil, fmt.Errorf("%w: volume %q: %d nodes", ErrTooManyNodes, name, len(pubs))
	}
	v, err := p.GetVolume(ctx, name)
	if err != nil {
		return nil, err
	}
	if formatPublished(v.Published) == val {
		return v, nil
	}
	if val == "" {
		err = p.zfsInherit(ctx, v.Dataset, propPublished)
	} else {
		err = p.zfsSet(ctx, v.Dataset, map[string]string{propPublished: val})
	}
	if err != nil {
		return nil, err
	}
	klog.InfoS("Published volume", "pool", p.name, "volume", name, "nodes", val)
	// As a read-back parses it: sorted, nil when none.
	recorded, err := parsePublished(val)
	if err != nil {
		return nil, err
	}
	nv, ok := p.index.updateVolume(name, func(v *Volume) { v.Published = recorded })
	if !ok {
		return nil, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	return nv, nil
}

// applyRootOwner gives a new volume's root directory its owner and mode,
// unless it already holds something or was changed: a retried create then
// converges, and nobody's data or choices are overwritten.
func applyRootOwner(v *Volume, o *api.Owner) error {
	if o == nil || !v.Mounted || v.Mountpoint == "" {
		return nil
	}
	fi, err := os.Stat(v.Mountpoint)
	if err != nil {
		return fmt.Errorf("volume %q: root directory: %w", v.Name, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("volume %q: root directory: no ownership information", v.Name)
	}
	if st.Uid == o.UID && st.Gid == o.GID && fi.Mode()&(fs.ModePerm|fs.ModeSetgid|fs.ModeSetuid|fs.ModeSticky) == o.Mode {
		return nil
	}
	pristine := st.Uid == 0 && st.Gid == 0 && fi.Mode().Perm() == 0o755
	entries, err := os.ReadDir(v.Mountpoint)
	if err != nil {
		return fmt.Errorf("volume %q: root directory: %w", v.Name, err)
	}
	if !pristine || len(entries) > 0 {
		return nil
	}
	if err := os.Chown(v.Mountpoint, int(o.UID), int(o.GID)); err != nil {
		return fmt.Errorf("volume %q: root directory owner: %w", v.Name, err)
	}
	// Chmod after chown: chown clears the setgid bit.
	if err := os.Chmod(v.Mountpoint, o.Mode); err != nil {
		return fmt.Errorf("volume %q: root directory mode: %w", v.Name, err)
	}
	return nil
}
