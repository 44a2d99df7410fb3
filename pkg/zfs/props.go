package zfs

import (
	"github.com/dots-csi/dots/pkg/api"

	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// User properties dots writes on its datasets. The pool is the source of
// truth: a server that restarts, or a pool imported on another node, reads
// every volume back from these.
const (
	propName         = "dots:name"
	propCapacity     = "dots:capacity"
	propSource       = "dots:source"
	propThick        = "dots:thick"
	propExportID     = "dots:exportid"
	propCreated      = "dots:created"
	propGroup        = "dots:group"         // on a snapshot: the group snapshot it belongs to
	propNextExportID = "dots:next-exportid" // on POOL/dots
	// propTrashed marks a deleted volume that still has snapshots. It is
	// normally moved under POOL/dots/trash too, but may have to wait under
	// volumes/ (see trashVolume).
	propTrashed = "dots:trashed"
)

// Native properties dots reads or sets.
const (
	propRefquota       = "refquota"
	propRefreservation = "refreservation"
	propType           = "type"
	propMountpoint     = "mountpoint"
	propMounted        = "mounted"
	propReferenced     = "referenced"
	propAvailable      = "available"
	propUsed           = "used"
	propCreation       = "creation"
	propOrigin         = "origin"
	propDeferDestroy   = "defer_destroy"
	propCanmount       = "canmount"
)

// Tunables a caller may set on a volume (StorageClass parameters).
const (
	PropCompression = "compression"
	PropRecordSize  = "recordsize"
	PropAtime       = "atime"
	PropSync        = "sync"
)

// Tunables lists the allow-listed properties in a stable order.
var Tunables = []string{PropAtime, PropCompression, PropRecordSize, PropSync}

var (
	compressionValues = set("on", "off", "lzjb", "gzip", "gzip-1", "gzip-2", "gzip-3", "gzip-4",
		"gzip-5", "gzip-6", "gzip-7", "gzip-8", "gzip-9", "zle", "lz4", "zstd")
	onOffValues = set("on", "off")
	syncValues  = set("standard", "always", "disabled")
)

func set(v ...string) map[string]bool {
	m := make(map[string]bool, len(v))
	for _, s := range v {
		m[s] = true
	}
	return m
}

// ValidateProperties checks tunables against the allow-list and returns
// them normalized (recordsize in bytes). The backend may still refuse a
// value it does not know (zfs-fuse has no lz4, zstd or sync): CreateVolume
// reports that as ErrInvalid too.
func ValidateProperties(in map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, v := range in {
		switch k {
		case PropCompression:
			if !compressionValues[v] {
				return nil, fmt.Errorf("%w: compression=%q is not one of %s", ErrInvalid, v, keys(compressionValues))
			}
		case PropAtime:
			if !onOffValues[v] {
				return nil, fmt.Errorf("%w: atime=%q is not on or off", ErrInvalid, v)
			}
		case PropSync:
			if !syncValues[v] {
				return nil, fmt.Errorf("%w: sync=%q is not one of %s", ErrInvalid, v, keys(syncValues))
			}
		case PropRecordSize:
			n, err := parseRecordSize(v)
			if err != nil {
				return nil, err
			}
			v = strconv.FormatInt(n, 10)
		default:
			return nil, fmt.Errorf("%w: unknown property %q (allowed: %s)", ErrInvalid, k, strings.Join(Tunables, ", "))
		}
		out[k] = v
	}
	return out, nil
}

func keys(m map[string]bool) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// parseRecordSize accepts bytes ("131072") or a K/M suffix ("128K", "1M"),
// a power of two from 512 to 1 MiB.
func parseRecordSize(v string) (int64, error) {
	s, mult := strings.ToUpper(v), int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		s, mult = strings.TrimSuffix(s, "K"), 1<<10
	case strings.HasSuffix(s, "M"):
		s, mult = strings.TrimSuffix(s, "M"), 1<<20
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<20)/mult {
		return 0, fmt.Errorf("%w: recordsize=%q is not a power of two from 512 to 1M", ErrInvalid, v)
	}
	n *= mult
	if n < 512 || n&(n-1) != 0 {
		return 0, fmt.Errorf("%w: recordsize=%q is not a power of two from 512 to 1M", ErrInvalid, v)
	}
	return n, nil
}

// String renders a source as stored in dots:source ("snapshot:NAME").
func (s Source) String() string {
	if s.Kind == SourceNone {
		return ""
	}
	return string(s.Kind) + ":" + s.Name
}

// ParseSource reads a dots:source value; "" and "-" mean no source.
func ParseSource(v string) (Source, error) {
	if v == "" || v == "-" {
		return Source{}, nil
	}
	kind, name, ok := strings.Cut(v, ":")
	if !ok {
		return Source{}, fmt.Errorf("%w: source %q has no kind", ErrInvalid, v)
	}
	switch SourceKind(kind) {
	case SourceSnapshot, SourceVolume:
	default:
		return Source{}, fmt.Errorf("%w: source %q has unknown kind %q", ErrInvalid, v, kind)
	}
	if err := api.ValidateID(name); err != nil {
		return Source{}, fmt.Errorf("source %q: %w", v, err)
	}
	return Source{Kind: SourceKind(kind), Name: name}, nil
}

func validateSource(s Source) error {
	if s.Kind == SourceNone {
		if s.Name != "" {
			return fmt.Errorf("%w: source name %q without a kind", ErrInvalid, s.Name)
		}
		return nil
	}
	_, err := ParseSource(s.String())
	return err
}

// propValue is one property as `zfs get -o name,property,value,source` prints it.
type propValue struct {
	value  string
	source string // "local", "default", "-", "inherited from X", ...
}

// local reports a value the dataset holds itself: set on it, or received
// with it (a replica's full stream, `zfs send -R`, carries the primary's
// own as "received"), never inherited.
func (p propValue) local() bool { return p.source == "local" || p.source == "received" }

// dsProps maps property name to value for one dataset.
type dsProps map[string]propValue

// str returns a property's value, "" when absent or "-".
func (d dsProps) str(k string) string {
	v, ok := d[k]
	if !ok || v.value == "-" {
		return ""
	}
	return v.value
}

// localStr is str restricted to locally set values, so dots:* properties
// inherited from a parent are never mistaken for a dataset's own.
func (d dsProps) localStr(k string) string {
	if v, ok := d[k]; ok && v.local() && v.value != "-" {
		return v.value
	}
	return ""
}

func (d dsProps) int(k string) int64 {
	n, _ := strconv.ParseInt(d.str(k), 10, 64)
	return n
}

// volumeFromProps builds a Volume from what `zfs get` reported. It fails for
// datasets dots did not make (no local dots:name).
func volumeFromProps(dataset string, p dsProps, tunables []string) (*Volume, error) {
	name := p.localStr(propName)
	if name == "" {
		return nil, fmt.Errorf("%w: dataset %s carries no %s", ErrInvalid, dataset, propName)
	}
	v := &Volume{
		Name:       lastComponent(dataset),
		Dataset:    dataset,
		Mountpoint: p.str(propMountpoint),
		Capacity:   p.int(propRefquota),
		Used:       p.int(propReferenced),
		Available:  p.int(propAvailable),
		Thick:      p.localStr(propThick) == "true",
		Reserved:   p.int(propRefreservation),
		Mounted:    p.str(propMounted) == "yes",
		Properties: map[string]string{},
	}
	v.Recorded, _ = strconv.ParseInt(p.localStr(propCapacity), 10, 64)
	if v.Mountpoint == "none" || v.Mountpoint == "legacy" {
		v.Mountpoint = ""
	}
	src, err := ParseSource(p.localStr(propSource))
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", dataset, err)
	}
	v.Source = src
	if id, err := strconv.ParseUint(p.localStr(propExportID), 10, 32); err == nil {
		v.ExportID = uint32(id)
	}
	if t, err := time.Parse(time.RFC3339Nano, p.localStr(propCreated)); err == nil {
		v.CreatedAt = t
	} else if secs := p.int(propCreation); secs > 0 {
		v.CreatedAt = time.Unix(secs, 0).UTC()
	}
	for _, k := range tunables {
		if s := p.localStr(k); s != "" {
			v.Properties[k] = s
		}
	}
	if err := readAccess(v, p); err != nil {
		return nil, fmt.Errorf("dataset %s: %w", dataset, err)
	}
	if err := readReplication(v, p); err != nil {
		return nil, fmt.Errorf("dataset %s: %w", dataset, err)
	}
	return v, nil
}
