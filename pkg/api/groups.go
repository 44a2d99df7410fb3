package api

import (
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// MaxGroupMembers bounds the volumes of one group snapshot: they are named
// in one zfs command, whose argv must stay far below the system's limit.
const MaxGroupMembers = 64

// GroupControllerCapabilities are the group controller RPCs the controller
// and every server implement.
func GroupControllerCapabilities() []*csi.GroupControllerServiceCapability {
	return []*csi.GroupControllerServiceCapability{{Type: &csi.GroupControllerServiceCapability_Rpc{
		Rpc: &csi.GroupControllerServiceCapability_RPC{Type: csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT}}}}
}

// GroupMemberID is the snapshot ID of volume's member of the group
// snapshot group (IDs on one server): deterministic, so a repeated create
// finds what the first one made, and the controller knows the members'
// IDs before the server makes them.
func GroupMemberID(group, volume string) string {
	name := group + "-" + volume
	// A hashed group ID starts with "_": hashed again, the member's ID
	// is valid.
	if len(name) <= MaxIDLen && ValidateName(name) == nil {
		return name
	}
	return hashedID(name)
}

// CheckGroupRequest validates a group snapshot's name and volumes: the
// controller and the servers refuse the same requests.
func CheckGroupRequest(name string, volumes []string) error {
	if err := Required("name", name); err != nil {
		return err
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	switch n := len(volumes); {
	case n == 0:
		return fmt.Errorf("%w: source_volume_ids: a group snapshot needs at least one volume", ErrInvalid)
	case n > MaxGroupMembers:
		return fmt.Errorf("%w: source_volume_ids: %d volumes, at most %d in one group snapshot", ErrInvalid, n, MaxGroupMembers)
	}
	seen := make(map[string]bool, len(volumes))
	for _, v := range volumes {
		if err := Required("source_volume_ids", v); err != nil {
			return err
		}
		if seen[v] {
			return fmt.Errorf("%w: source_volume_ids: volume %q is named twice", ErrInvalid, v)
		}
		seen[v] = true
	}
	return nil
}
