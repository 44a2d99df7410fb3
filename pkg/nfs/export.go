package nfs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
)

// Sentinel errors. Callers test them with errors.Is; only the gRPC layer
// turns them into status codes.
var (
	// ErrInvalid: an export or a configuration failed validation.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnavailable: the NFS server is not running (never started, stopped,
	// or restarting after a crash) or did not answer in time.
	ErrUnavailable = errors.New("NFS server unavailable")
	// ErrNotFound: the directory to export does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExportFailed: the NFS server refused an export it was given.
	ErrExportFailed = errors.New("NFS server rejected the export")
)

// Export IDs ganesha accepts for ordinary exports: 0 is the pseudo root and
// 65535 is reserved.
const (
	MinExportID = 1
	MaxExportID = 65534
)

// maxPathLen keeps generated config lines and NFS paths reasonable.
const maxPathLen = 1024

// safePath is the only text we ever put between quotes in ganesha's config.
// A whitelist (no quotes, spaces, braces, semicolons, '#', '%', newlines or
// backslashes) means no value can close its string or open a block.
var safePath = regexp.MustCompile(`^/[A-Za-z0-9._:@+,=/-]*$`)

// Export is one directory served over NFS.
type Export struct {
	// ID is ganesha's Export_Id. It is embedded in every NFS file handle,
	// so it must stay the same for the life of a volume; the caller
	// allocates and persists it.
	ID uint32
	// Path is the directory to export (a dataset's mountpoint).
	Path string
	// Pseudo is where the export appears in the NFSv4 pseudo filesystem,
	// e.g. /dots/pvc-123. NFSv3 clients mount the same path.
	Pseudo string
	// ReadOnly exports refuse writes.
	ReadOnly bool
	// Clients may mount the export (read-only when ReadOnly): addresses
	// or CIDRs in canonical form, each inside the server's client
	// networks. None: nobody may.
	Clients []string
	// ReadOnlyClients may mount it read-only, whatever ReadOnly says.
	ReadOnlyClients []string
	// Squash maps users for this export: one of the Squash* constants, or
	// "" for the server's.
	Squash string
	// AnonUID and AnonGID are who squashed users become; 0 means the
	// server's anonymous id (squashing to root would squash nothing).
	AnonUID, AnonGID uint32
}

// clone returns e with slices of its own, so a caller's later changes
// never reach the desired set.
func (e Export) clone() Export {
	e.Clients = slices.Clone(e.Clients)
	e.ReadOnlyClients = slices.Clone(e.ReadOnlyClients)
	return e
}

// Equal reports whether two exports are the same in every respect.
func (e Export) Equal(o Export) bool {
	return e.ID == o.ID && e.Path == o.Path && e.Pseudo == o.Pseudo && e.ReadOnly == o.ReadOnly &&
		slices.Equal(e.Clients, o.Clients) && slices.Equal(e.ReadOnlyClients, o.ReadOnlyClients) &&
		e.Squash == o.Squash && e.AnonUID == o.AnonUID && e.AnonGID == o.AnonGID
}

// Exporter publishes directories over NFS.
type Exporter interface {
	// Export serves e and returns once clients can use it. Exporting the
	// same export again succeeds; the same ID with another Path or Pseudo
	// replaces the old export.
	Export(ctx context.Context, e Export) error
	// Unexport stops serving the export with this ID. Unknown IDs succeed.
	Unexport(ctx context.Context, id uint32) error
	// SetExports replaces the whole set of exports.
	SetExports(ctx context.Context, exports []Export) error
	// Exports lists the current exports, ordered by ID.
	Exports() []Export
}

// Validate checks one export on its own.
func (e Export) Validate() error {
	if e.ID < MinExportID || e.ID > MaxExportID {
		return fmt.Errorf("%w: export id %d out of range %d..%d", ErrInvalid, e.ID, MinExportID, MaxExportID)
	}
	if err := checkPath("path", e.Path); err != nil {
		return fmt.Errorf("export %d: %w", e.ID, err)
	}
	if err := checkPath("pseudo path", e.Pseudo); err != nil {
		return fmt.Errorf("export %d: %w", e.ID, err)
	}
	for _, c := range slices.Concat(e.Clients, e.ReadOnlyClients) {
		if _, err := parseClient(c); err != nil {
			return fmt.Errorf("export %d: %w", e.ID, err)
		}
	}
	switch e.Squash {
	case "", SquashRoot, SquashRootID, SquashAll, SquashNone:
	default:
		return fmt.Errorf("%w: export %d: squash %q", ErrInvalid, e.ID, e.Squash)
	}
	return nil
}

// parseClient reads one client entry: an address or a CIDR, in the
// canonical form ganesha is given (nothing else ever reaches its config).
func parseClient(c string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(c); err == nil && a.Zone() == "" && a.String() == c {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Zone() == "" && p.Masked().String() == c {
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("%w: client %q is not an IP address or CIDR in canonical form", ErrInvalid, c)
}

// checkPath accepts absolute, clean paths below / made of safe characters.
func checkPath(what, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case len(p) > maxPathLen:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, what, maxPathLen)
	case !safePath.MatchString(p):
		return fmt.Errorf("%w: %s %q must be absolute and use only letters, digits and ._:@+,=/-", ErrInvalid, what, p)
	case path.Clean(p) != p:
		return fmt.Errorf("%w: %s %q is not clean", ErrInvalid, what, p)
	case p == "/":
		return fmt.Errorf("%w: %s must not be /", ErrInvalid, what)
	}
	return nil
}

// pseudoIndex maps pseudo paths to export IDs. Besides uniqueness it refuses
// nesting: an export below another one would be reachable by the clients
// of the outer export, whatever the inner export's access rules say.
type pseudoIndex map[string]uint32

// conflict reports why e cannot join the index, or nil. Entries owned by
// e.ID itself are ignored, so an export may replace its own earlier version.
func (ix pseudoIndex) conflict(e Export) error {
	if owner, ok := ix[e.Pseudo]; ok && owner != e.ID {
		return fmt.Errorf("%w: pseudo path %s of export %d is already used by export %d", ErrInvalid, e.Pseudo, e.ID, owner)
	}
	for dir := path.Dir(e.Pseudo); dir != "/"; dir = path.Dir(dir) {
		if owner, ok := ix[dir]; ok && owner != e.ID {
			return fmt.Errorf("%w: pseudo path %s of export %d is inside export %d (%s)", ErrInvalid, e.Pseudo, e.ID, owner, dir)
		}
	}
	prefix := e.Pseudo + "/"
	for p, owner := range ix {
		if owner != e.ID && len(p) > len(prefix) && p[:len(prefix)] == prefix {
			return fmt.Errorf("%w: export %d (%s) would contain export %d (%s)", ErrInvalid, e.ID, e.Pseudo, owner, p)
		}
	}
	return nil
}

// validateSet checks a complete list: each export, unique IDs, unique and
// non-nested pseudo paths. It returns the list keyed by ID.
func validateSet(exports []Export) (map[uint32]Export, error) {
	byID := make(map[uint32]Export, len(exports))
	ix := make(pseudoIndex, len(exports))
	for _, e := range exports {
		if err := e.Validate(); err != nil {
			return nil, err
		}
		if _, dup := byID[e.ID]; dup {
			return nil, fmt.Errorf("%w: export id %d appears twice", ErrInvalid, e.ID)
		}
		byID[e.ID] = e
	}
	// Walking each path's parents finds every nested pair from the inner
	// side, so the O(n) child scan of conflict is not needed here, where n
	// can be thousands.
	for _, e := range exports {
		if owner, ok := ix[e.Pseudo]; ok {
			return nil, fmt.Errorf("%w: pseudo path %s is used by exports %d and %d", ErrInvalid, e.Pseudo, owner, e.ID)
		}
		ix[e.Pseudo] = e.ID
	}
	for _, e := range exports {
		for dir := path.Dir(e.Pseudo); dir != "/"; dir = path.Dir(dir) {
			if owner, ok := ix[dir]; ok {
				return nil, fmt.Errorf("%w: pseudo path %s of export %d is inside export %d (%s)", ErrInvalid, e.Pseudo, e.ID, owner, dir)
			}
		}
	}
	return byID, nil
}
