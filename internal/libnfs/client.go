// Package libnfs drives the libnfs command-line tools (nfs-cp, nfs-cat,
// nfs-ls) as a userspace NFS client, so tests can prove the data path
// through a real NFS server on machines without a kernel NFS client.
package libnfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors, matched against the tool's stderr.
var (
	ErrInvalid  = errors.New("invalid argument")
	ErrQuota    = errors.New("quota exceeded")         // NFS3ERR_DQUOT, NFS4ERR_DQUOT, NOSPC
	ErrReadOnly = errors.New("read-only export")       // NFS3ERR_ROFS, NFS4ERR_ROFS
	ErrNotFound = errors.New("not found")              // NOENT, or an unknown export
	ErrAccess   = errors.New("access denied")          // ACCES, PERM, WRONGSEC
	ErrGrace    = errors.New("server in grace period") // NFS4ERR_GRACE, NFS3ERR_JUKEBOX
	ErrExists   = errors.New("file exists")            // NFS3ERR_EXIST, NFS4ERR_EXIST
)

// kinds maps stderr fragments to sentinels, first match wins.
var kinds = []struct {
	frag string
	err  error
}{
	{"DQUOT", ErrQuota},
	{"EXIST", ErrExists},
	{"NOSPC", ErrQuota},
	{"ROFS", ErrReadOnly},
	{"GRACE", ErrGrace},
	{"JUKEBOX", ErrGrace},
	{"NOENT", ErrNotFound},
	{"ACCES", ErrAccess},
	{"PERM", ErrAccess},
	{"WRONGSEC", ErrAccess},
}

// DefaultTimeout bounds one tool run when ctx has no deadline: libnfs
// waits forever on a server that accepted the connection and went quiet.
const DefaultTimeout = 2 * time.Minute

// Client addresses one NFS server.
type Client struct {
	Host      string // IP address or host name
	Port      int    // NFS port; 0 lets libnfs ask rpcbind
	MountPort int    // MOUNT port for NFSv3; 0 lets libnfs ask rpcbind
	Version   int    // 3 or 4; 0 means libnfs's default (3)
	// UID and GID are the AUTH_SYS credentials sent; nil sends the
	// caller's own.
	UID, GID *uint32
	// Netns runs the tools inside this network namespace (nsenter --net),
	// so their traffic comes from its addresses: a node, as the server sees it.
	Netns string
}

// ToolError is a failed tool run. It wraps the sentinel its stderr matches.
type ToolError struct {
	Tool   string
	URL    string
	Stderr string
	Err    error // the exec error
	Kind   error // one of the sentinels, or nil
}

func (e *ToolError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = "(no stderr)"
	}
	return fmt.Sprintf("%s %s: %v: %s", e.Tool, e.URL, e.Err, msg)
}

// Unwrap exposes both the exec error and the sentinel.
func (e *ToolError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

var (
	safeHost = regexp.MustCompile(`^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$`)
	// libnfs does not unescape URLs, so only characters that need no
	// escaping are allowed in paths.
	safeSeg = regexp.MustCompile(`^[A-Za-z0-9._+,=@:-]+$`)
)

// URL returns the nfs:// URL of p inside export:
// nfs://HOST/EXPORT/P?nfsport=N&mountport=M&version=V.
func (c Client) URL(export, p string) (string, error) {
	if !safeHost.MatchString(c.Host) {
		return "", fmt.Errorf("%w: host %q", ErrInvalid, c.Host)
	}
	if c.Version != 0 && c.Version != 3 && c.Version != 4 {
		return "", fmt.Errorf("%w: NFS version %d", ErrInvalid, c.Version)
	}
	if c.Port < 0 || c.Port > 65535 || c.MountPort < 0 || c.MountPort > 65535 {
		return "", fmt.Errorf("%w: port out of range", ErrInvalid)
	}
	if !strings.HasPrefix(export, "/") {
		return "", fmt.Errorf("%w: export %q must be absolute", ErrInvalid, export)
	}
	full := export
	for _, part := range []string{export, p} {
		for _, seg := range strings.Split(part, "/") {
			if seg == "" {
				continue
			}
			if seg == "." || seg == ".." || !safeSeg.MatchString(seg) {
				return "", fmt.Errorf("%w: path segment %q", ErrInvalid, seg)
			}
		}
	}
	if p != "" {
		full = path.Join(export, p)
	}
	q := []string{}
	if c.Port != 0 {
		q = append(q, "nfsport="+strconv.Itoa(c.Port))
	}
	if c.MountPort != 0 {
		q = append(q, "mountport="+strconv.Itoa(c.MountPort))
	}
	if c.Version != 0 {
		q = append(q, "version="+strconv.Itoa(c.Version))
	}
	if c.UID != nil {
		q = append(q, "uid="+strconv.FormatUint(uint64(*c.UID), 10))
	}
	if c.GID != nil {
		q = append(q, "gid="+strconv.FormatUint(uint64(*c.GID), 10))
	}
	u := url.URL{Scheme: "nfs", Host: c.Host, Path: path.Clean(full), RawQuery: strings.Join(q, "&")}
	return u.String(), nil
}

// WriteFile writes data to the file p in export. nfs-cp creates files
// exclusively over NFSv3, so there an existing file fails with ErrExists;
// over NFSv4 it is overwritten. Over NFSv4, libnfs 4.0 writes at most
// about 3.5 KB (larger writes fail in the client, no WRITE is sent), and
// creating a file on zfs-fuse fails (ENVIRONMENT.md): use NFSv3 for data.
func (c Client) WriteFile(ctx context.Context, export, p string, data []byte) error {
	if p == "" || strings.HasSuffix(p, "/") {
		return fmt.Errorf("%w: file path %q", ErrInvalid, p)
	}
	u, err := c.URL(export, p)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "libnfs-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	_, err = c.run(ctx, "nfs-cp", u, f.Name(), u)
	var te *ToolError
	if errors.As(err, &te) && te.Kind == nil && strings.Contains(te.Stderr, "Failed to write") {
		if c.Version == 4 {
			te.Stderr = strings.TrimSpace(te.Stderr) + "\n(libnfs 4.0 fails NFSv4 writes of more than about 3.5 KB before sending them; use NFSv3)"
		} else {
			c.explainWrite(ctx, export, p, te)
		}
	}
	return err
}

// explainWrite finds out why a WRITE failed: nfs-cp prints no NFS status
// for it. A write fails mostly because the file system is full or over
// quota, and then creating a file fails too, with its status: so an empty
// file is created next to the target and its error, if any, is added to
// te. If the create succeeds the empty probe file stays behind (the tools
// cannot delete), which only happens on writes failing for another reason.
func (c Client) explainWrite(ctx context.Context, export, p string, te *ToolError) {
	empty, err := os.CreateTemp("", "libnfs-probe-*")
	if err != nil {
		return
	}
	empty.Close()
	defer os.Remove(empty.Name())
	probe := path.Join(path.Dir(p), ".libnfs-probe-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	u, err := c.URL(export, probe)
	if err != nil {
		return
	}
	_, err = c.run(ctx, "nfs-cp", u, empty.Name(), u)
	var pe *ToolError
	if errors.As(err, &pe) {
		te.Stderr = strings.TrimSpace(te.Stderr) + "\n(probe: creating " + probe + " fails too: " + strings.TrimSpace(pe.Stderr) + ")"
		te.Kind = pe.Kind
	}
}

// ReadFile returns the content of the file p in export.
func (c Client) ReadFile(ctx context.Context, export, p string) ([]byte, error) {
	u, err := c.URL(export, p)
	if err != nil {
		return nil, err
	}
	return c.run(ctx, "nfs-cat", u, u)
}

// lsLine is one nfs-ls line: mode, links, uid, gid, size, name.
var lsLine = regexp.MustCompile(`^\S+\s+\d+\s+\S+\s+\S+\s+\d+\s(.+)$`)

// List returns the names in directory dir of export ("" or "/" for the
// export's root), without "." and "..".
func (c Client) List(ctx context.Context, export, dir string) ([]string, error) {
	u, err := c.URL(export, dir)
	if err != nil {
		return nil, err
	}
	out, err := c.run(ctx, "nfs-ls", u, u)
	if err != nil {
		return nil, err
	}
	names, err := parseList(string(out))
	if err != nil {
		return nil, fmt.Errorf("nfs-ls %s: %w", u, err)
	}
	return names, nil
}

// parseList reads nfs-ls output.
func parseList(out string) ([]string, error) {
	names := []string{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		m := lsLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("unexpected line %q", line)
		}
		if m[1] != "." && m[1] != ".." {
			names = append(names, m[1])
		}
	}
	return names, nil
}

// classify maps a tool's stderr to a sentinel, or nil.
func classify(stderr string) error {
	for _, k := range kinds {
		if strings.Contains(stderr, k.frag) {
			return k.err
		}
	}
	return nil
}

// run executes tool with args (in c.Netns, if set) and returns its stdout.
func (c Client) run(ctx context.Context, tool, u string, args ...string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	var stdout, stderr bytes.Buffer
	argv := append([]string{tool}, args...)
	if c.Netns != "" {
		// The network namespace only: `ip netns exec` would also copy the
		// mount table, and a copy holds every zfs-fuse dataset mounted at
		// that moment, which keeps its pool busy (no export) while the
		// tool runs.
		argv = append([]string{"nsenter", "--net=/run/netns/" + c.Netns, "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, &ToolError{Tool: tool, URL: u, Stderr: stderr.String(), Err: err, Kind: classify(stderr.String())}
	}
	return stdout.Bytes(), nil
}
