package api

import (
	"fmt"
	"regexp"
	"strings"
)

// MaxServerNameLen bounds a storage server's name: a DNS label short enough
// that SERVER/ID stays within the 128 bytes of a CSI ID.
const MaxServerNameLen = 27

var serverNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidateServerName checks a storage server's name: a lowercase DNS label
// (in Kubernetes, the server pod's name).
func ValidateServerName(name string) error {
	if len(name) == 0 || len(name) > MaxServerNameLen || !serverNameRE.MatchString(name) {
		return fmt.Errorf("%w: server name %q must be a lowercase DNS label of 1..%d characters", ErrInvalid, name, MaxServerNameLen)
	}
	return nil
}

// IsDNSName checks RFC 1123 host name syntax: dot-separated labels of
// letters, digits and '-', with an optional final dot. With underscores,
// labels may also hold '_', as the service and protocol labels of SRV
// names do ("_api._tcp.…").
func IsDNSName(s string, underscores bool) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || underscores && c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}
