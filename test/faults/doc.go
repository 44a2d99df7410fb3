// Package faults puts dots' controller and storage servers through
// failures (servers that stop, hang or die in the middle of work, commands
// that never return) on real zfs-fuse pools and NFS-Ganesha, and checks
// that what the user was told stays true. Its tests carry the integration
// build tag.
package faults
