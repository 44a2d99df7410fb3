package api

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// MaxNodeIDLen is the CSI bound on a node ID.
const MaxNodeIDLen = 256

// MaxNodeAddresses bounds the addresses of one node (dual stack needs two;
// an overlay network's tunnel and bridge addresses add some).
const MaxNodeAddresses = 4

// ErrUnknownNode is a node ID that names no dots node (it carries no
// address an export could admit): for the caller, that node does not
// exist.
var ErrUnknownNode = errors.New("unknown node")

// nodeName is what may stand before '@': Kubernetes node names and more,
// but nothing that could mean something in an exports file or a property.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// nodeIDChars are all a node ID may hold: a name's, IPv4's and IPv6's
// characters and the separators.
var nodeIDChars = regexp.MustCompile(`^[A-Za-z0-9._:@,-]+$`)

// NodeID is a node as the node plugin reports it in NodeGetInfo and the
// controller receives it in ControllerPublishVolume: its name, for people,
// and the addresses its NFS traffic comes from, which the exports of the
// volumes published to it admit. Format: NAME@ADDR[,ADDR...].
type NodeID struct {
	Name      string
	Addresses []netip.Addr
}

// String formats the node ID. A name too long to fit MaxNodeIDLen with the
// addresses is shortened: only the addresses are ever acted on.
func (n NodeID) String() string {
	addrs := make([]string, len(n.Addresses))
	for i, a := range n.Addresses {
		addrs[i] = a.String()
	}
	tail := "@" + strings.Join(addrs, ",")
	name := n.Name
	if len(name)+len(tail) > MaxNodeIDLen {
		name = name[:max(0, MaxNodeIDLen-len(tail))]
	}
	return name + tail
}

// NewNodeID checks a node's name and addresses (from the node plugin's
// flags) and returns its ID.
func NewNodeID(name string, addrs []string) (NodeID, error) {
	n := NodeID{Name: name}
	for _, s := range addrs {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return n, fmt.Errorf("%w: node address %q: %v", ErrInvalid, s, err)
		}
		n.Addresses = append(n.Addresses, a)
	}
	id, err := ParseNodeID(n.String())
	if err != nil {
		return n, err
	}
	if len(id.Name) != len(name) {
		return n, fmt.Errorf("%w: node name %q is too long for a node ID with its addresses (%d bytes at most)", ErrInvalid, name, MaxNodeIDLen)
	}
	return id, nil
}

// ParseNodeID reads a node ID. Text that is not a node ID at all (too
// long, characters no node ID has) is ErrInvalid; a well-formed string
// without usable addresses (a node of another driver, a made-up name) is
// ErrUnknownNode.
func ParseNodeID(s string) (NodeID, error) {
	var n NodeID
	if s == "" {
		return n, fmt.Errorf("%w: node_id is empty", ErrInvalid)
	}
	if len(s) > MaxNodeIDLen {
		return n, fmt.Errorf("%w: node_id is longer than %d bytes", ErrInvalid, MaxNodeIDLen)
	}
	if !nodeIDChars.MatchString(s) {
		return n, fmt.Errorf("%w: node_id %q: a node ID holds only letters, digits and ._:@,-", ErrInvalid, s)
	}
	name, list, ok := strings.Cut(s, "@")
	if !ok || list == "" {
		return n, fmt.Errorf("%w: node %q: a dots node ID is NAME@ADDRESS", ErrUnknownNode, s)
	}
	if name != "" && !nodeName.MatchString(name) {
		return n, fmt.Errorf("%w: node_id %q: the name may use only letters, digits and ._-", ErrInvalid, s)
	}
	n.Name = name
	for _, part := range strings.Split(list, ",") {
		a, err := netip.ParseAddr(part)
		if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return n, fmt.Errorf("%w: node %q: %q is not a unicast IP address", ErrUnknownNode, s, part)
		}
		a = a.Unmap()
		if !slices.Contains(n.Addresses, a) {
			n.Addresses = append(n.Addresses, a)
		}
	}
	if len(n.Addresses) > MaxNodeAddresses {
		return n, fmt.Errorf("%w: node_id %q has more than %d addresses", ErrInvalid, s, MaxNodeAddresses)
	}
	return n, nil
}
