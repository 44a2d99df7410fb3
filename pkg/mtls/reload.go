package mtls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// racyWindow: a file changed less than this before it was read may change
// again without a visible change of its stamp (mtime has the kernel's
// clock-tick granularity, and a rewrite may keep the size). Until it has
// passed, the contents are compared too (git's "racy clean" problem).
const racyWindow = 2 * time.Second

// material is one loaded set of a certificate, its key and the CA pool.
type material struct {
	cert tls.Certificate // with Leaf
	pool *x509.CertPool
}

// stamp identifies a file's version cheaply: a rename over it (a
// Kubernetes Secret's ..data swap, an atomic write) changes the inode, a
// rewrite in place the size or the mtime.
type stamp struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

type stamps [3]stamp

// source keeps the material of three files current: every handshake asks
// it, it stats the files (following symlinks) and reloads when they
// changed. A reload that fails keeps the last good material, logged once
// per change of the files.
type source struct {
	paths [3]string // cert, key, CA
	now   func() time.Time

	mu       sync.Mutex
	cur      *material
	stamps   stamps    // of the files cur was loaded from
	raw      [3][]byte // their contents
	loadedAt time.Time
	// The files' state when a reload last failed, and its error: a
	// failure is logged once, not on every handshake.
	bad    stamps
	badAt  time.Time
	badErr string
}

func newSource(f Files) (*source, error) {
	s := &source{paths: [3]string{f.CertFile, f.KeyFile, f.CAFile}, now: time.Now}
	st, err := s.stat()
	if err != nil {
		return nil, err
	}
	raw, err := s.read()
	if err != nil {
		return nil, err
	}
	m, err := s.parse(raw)
	if err != nil {
		return nil, err
	}
	s.cur, s.stamps, s.raw, s.loadedAt = m, st, raw, s.now()
	klog.InfoS("TLS files loaded", "cert", s.paths[0], "ca", s.paths[2], "identities", m.cert.Leaf.DNSNames,
		"serial", serial(m.cert.Leaf), "notAfter", m.cert.Leaf.NotAfter)
	return s, nil
}

// get returns the current material, reloaded first if the files changed.
func (s *source) get() *material {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.stat()
	if err == nil && st == s.stamps && !racy(st, s.loadedAt) {
		return s.cur
	}
	if err == nil && st == s.bad && !racy(st, s.badAt) {
		return s.cur // a failure already reported
	}
	var raw [3][]byte
	if err == nil {
		raw, err = s.read()
	}
	if err == nil && sameFiles(raw, s.raw) {
		// Unchanged contents (a touch, or a check within the racy
		// window): settle the stamps.
		s.stamps, s.loadedAt, s.bad, s.badAt, s.badErr = st, s.now(), stamps{}, time.Time{}, ""
		return s.cur
	}
	var m *material
	if err == nil {
		m, err = s.parse(raw)
	}
	if err != nil {
		if st != s.bad || err.Error() != s.badErr || s.badAt.IsZero() {
			klog.ErrorS(err, "TLS files changed but cannot be loaded; still using the previous ones",
				"cert", s.paths[0], "key", s.paths[1], "ca", s.paths[2], "serial", serial(s.cur.cert.Leaf))
		}
		s.bad, s.badAt, s.badErr = st, s.now(), err.Error()
		return s.cur
	}
	s.cur, s.stamps, s.raw, s.loadedAt, s.bad, s.badAt, s.badErr = m, st, raw, s.now(), stamps{}, time.Time{}, ""
	klog.InfoS("TLS files reloaded", "cert", s.paths[0], "ca", s.paths[2], "identities", m.cert.Leaf.DNSNames,
		"serial", serial(m.cert.Leaf), "notAfter", m.cert.Leaf.NotAfter)
	return m
}

// racy reports whether a file was changed so shortly before at (when it
// was read) that a later rewrite may have kept its stamp.
func racy(st stamps, at time.Time) bool {
	for _, f := range st {
		if at.Sub(time.Unix(0, f.mtime)) < racyWindow {
			return true
		}
	}
	return false
}

func (s *source) stat() (stamps, error) {
	var out stamps
	for i, p := range s.paths {
		fi, err := os.Stat(p) // follows symlinks: Secret volumes swap ..data
		if err != nil {
			return stamps{}, err
		}
		out[i] = stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			out[i].dev, out[i].ino = uint64(sys.Dev), sys.Ino
		}
	}
	return out, nil
}

func (s *source) read() ([3][]byte, error) {
	var raw [3][]byte
	for i, p := range s.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return raw, err
		}
		raw[i] = b
	}
	return raw, nil
}

func (s *source) parse(raw [3][]byte) (*material, error) {
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", s.paths[0], s.paths[1], err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", s.paths[0], err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw[2]) {
		return nil, fmt.Errorf("%s: %w", s.paths[2], errNoCACert)
	}
	return &material{cert: cert, pool: pool}, nil
}

var errNoCACert = errors.New("no PEM certificate in the CA file")

func sameFiles(a, b [3][]byte) bool {
	return bytes.Equal(a[0], b[0]) && bytes.Equal(a[1], b[1]) && bytes.Equal(a[2], b[2])
}

func serial(c *x509.Certificate) string { return c.SerialNumber.Text(16) }
