// Package csirpc holds what every dots gRPC server shares: endpoint parsing
// and listening, the one interceptor that logs and measures each call, and the
// one place where backend errors become gRPC status codes.
package csirpc

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// ErrBadEndpoint reports an endpoint that is neither unix:// nor tcp://.
var ErrBadEndpoint = errors.New("endpoint must be unix:///path or tcp://host:port")

// ParseEndpoint splits "unix:///run/csi.sock" or "tcp://127.0.0.1:7070" into
// a network and an address for net.Listen / grpc dialing.
func ParseEndpoint(endpoint string) (network, address string, err error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrBadEndpoint, endpoint, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "unix":
		path := u.Path
		if u.Host != "" { // unix://relative/path
			path = u.Host + u.Path
		}
		if path == "" {
			return "", "", fmt.Errorf("%w: %q has no path", ErrBadEndpoint, endpoint)
		}
		return "unix", path, nil
	case "tcp":
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return "", "", fmt.Errorf("%w: %q: %v", ErrBadEndpoint, endpoint, err)
		}
		return "tcp", u.Host, nil
	}
	return "", "", fmt.Errorf("%w: %q", ErrBadEndpoint, endpoint)
}

// Listen listens on the endpoint. A unix socket left behind by a process
// that died is removed first; a path that is not a socket is never removed.
// A unix socket is plaintext, so only its owner may connect (0600), and a
// directory Listen creates for it is its owner's alone (0700).
func Listen(endpoint string) (net.Listener, error) {
	network, address, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if fi, err := os.Lstat(address); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("%s exists and is not a socket", address)
			}
			if c, err := net.Dial("unix", address); err == nil {
				c.Close()
				return nil, fmt.Errorf("%s is in use by a running process", address)
			}
			if err := os.Remove(address); err != nil {
				return nil, fmt.Errorf("removing stale socket: %w", err)
			}
		}
		if err := os.MkdirAll(filepath.Dir(address), 0o700); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen(network, address)
	if err != nil || network != "unix" {
		return lis, err
	}
	if err := os.Chmod(address, 0o600); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}

// DialTarget turns an endpoint into a grpc.NewClient target.
func DialTarget(endpoint string) (string, error) {
	network, address, err := ParseEndpoint(endpoint)
	if err != nil {
		return "", err
	}
	if network == "unix" {
		return "unix://" + address, nil
	}
	return "passthrough:///" + address, nil
}
