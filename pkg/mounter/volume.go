package mounter

import (
	"fmt"
	"net"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dots-csi/dots/pkg/api"
)

// Volume says where a volume's data is, as read from its volume context.
type Volume struct {
	// ID is the CSI volume id, for logs.
	ID string
	// Server is the name of the storage server this location belongs to,
	// for logs and errors ("" in a volume context without candidates).
	Server string
	// Address is the storage server's NFS address: an IP address (IPv6 with
	// or without brackets) or a DNS name.
	Address string
	// Port is the NFS port; 0 means the standard 2049.
	Port int
	// Export is the NFSv4 pseudo path of the volume's export, e.g. /dots/pvc-1.
	Export string
	// LocalPath is the dataset's mountpoint on the server's machine; only
	// the local-bind mode uses it.
	LocalPath string
}

const maxPathLen = 4096

// String names the location for logs and errors: the server, its NFS
// address and, when set, its local path (the local-bind mode's).
func (v Volume) String() string {
	var parts []string
	switch {
	case v.Address != "" && v.Port != 0:
		parts = append(parts, net.JoinHostPort(strings.Trim(v.Address, "[]"), strconv.Itoa(v.Port)))
	case v.Address != "":
		parts = append(parts, v.Address)
	}
	if v.LocalPath != "" {
		parts = append(parts, v.LocalPath)
	}
	where := strings.Join(parts, ", ")
	if v.Server == "" {
		return where
	}
	return v.Server + " (" + where + ")"
}

// NFSSource returns the mount source ADDR:/EXPORT, with an IPv6 address in
// brackets, after validating both parts.
func (v Volume) NFSSource() (string, error) {
	addr, err := nfsAddress(v.Address)
	if err != nil {
		return "", err
	}
	if err := checkExport(v.Export); err != nil {
		return "", err
	}
	if v.Port < 0 || v.Port > 65535 {
		return "", fmt.Errorf("%w: port %d out of range", ErrInvalidVolume, v.Port)
	}
	return addr + ":" + v.Export, nil
}

// nfsAddress validates an address and returns it in mount source form.
func nfsAddress(a string) (string, error) {
	if a == "" {
		return "", fmt.Errorf("%w: empty NFS address", ErrInvalidVolume)
	}
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		ip := net.ParseIP(a[1 : len(a)-1])
		if ip == nil || ip.To4() != nil {
			return "", fmt.Errorf("%w: %q is not a bracketed IPv6 address", ErrInvalidVolume, a)
		}
		return "[" + ip.String() + "]", nil
	}
	if ip := net.ParseIP(a); ip != nil {
		if ip.To4() != nil {
			return ip.String(), nil
		}
		return "[" + ip.String() + "]", nil
	}
	if !api.IsDNSName(a, false) {
		return "", fmt.Errorf("%w: %q is neither an IP address nor a DNS name", ErrInvalidVolume, a)
	}
	return a, nil
}

// checkExport accepts a clean absolute path below the pseudo root.
func checkExport(e string) error {
	if err := checkPath("export", e); err != nil {
		return err
	}
	if e == "/" {
		return fmt.Errorf("%w: export is the NFSv4 pseudo root, not a volume", ErrInvalidVolume)
	}
	return nil
}

// checkLocalPath accepts an absolute path on this node (staging or target
// path). Commas and quotes are harmless there (paths go to mount(8) as
// separate arguments), but whitespace and backslashes are escaped in the
// mount table, where the path could then not be found again.
func checkLocalPath(what, p string) error {
	if p == "" || len(p) > maxPathLen || !filepath.IsAbs(p) {
		return fmt.Errorf("%w: %s %q is not an absolute path of at most %d bytes", ErrInvalidVolume, what, p, maxPathLen)
	}
	if badPathChar(p) {
		return fmt.Errorf("%w: %s %q holds whitespace, a backslash or a control character", ErrInvalidVolume, what, p)
	}
	return nil
}

// checkPath accepts a clean absolute path without characters that would be
// ambiguous in a mount source, options or the mount table.
func checkPath(what, p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalidVolume, what)
	}
	if len(p) > maxPathLen {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalidVolume, what, maxPathLen)
	}
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
		return fmt.Errorf("%w: %s %q is not a clean absolute path", ErrInvalidVolume, what, p)
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f || r == ',' || r == '"' || r == '\'' || r == '\\' {
			return fmt.Errorf("%w: %s %q holds whitespace, ',', a quote or a control character", ErrInvalidVolume, what, p)
		}
	}
	return nil
}
