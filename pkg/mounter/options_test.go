package mounter

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestNFSMountOptionsMerge(t *testing.T) {
	defaults := []string{"vers=4.1", "hard", "timeo=600", "retrans=2", "noresvport", "nosuid", "nodev"}
	tests := []struct {
		name string
		user []string
		port int
		want []string
	}{
		{"defaults", nil, 0, defaults},
		{"port appended", nil, 20490, append(append([]string{}, defaults...), "port=20490")},
		{"soft replaces hard in place", []string{"soft"}, 0,
			[]string{"vers=4.1", "soft", "timeo=600", "retrans=2", "noresvport", "nosuid", "nodev"}},
		{"vers override", []string{"vers=4.2"}, 0,
			[]string{"vers=4.2", "hard", "timeo=600", "retrans=2", "noresvport", "nosuid", "nodev"}},
		{"nfsvers is an alias of vers", []string{"nfsvers=4.0"}, 0,
			[]string{"vers=4.0", "hard", "timeo=600", "retrans=2", "noresvport", "nosuid", "nodev"}},
		{"numbers normalised", []string{"timeo=0100", "retrans=5"}, 0,
			[]string{"vers=4.1", "hard", "timeo=100", "retrans=5", "noresvport", "nosuid", "nodev"}},
		{"resvport override", []string{"resvport"}, 0,
			[]string{"vers=4.1", "hard", "timeo=600", "retrans=2", "resvport", "nosuid", "nodev"}},
		{"extras keep user order", []string{"noatime", "nconnect=4", "ro", "lookupcache=pos"}, 2050,
			append(append([]string{}, defaults...), "noatime", "nconnect=4", "ro", "lookupcache=pos", "port=2050")},
		{"repeat is harmless", []string{"hard", "hard", "noatime", "noatime"}, 0,
			append(append([]string{}, defaults...), "noatime")},
		{"sec=sys, lock and clientaddr accepted", []string{"sec=sys", "lock", "clientaddr=fd00::0:1"}, 0,
			append(append([]string{}, defaults...), "sec=sys", "lock", "clientaddr=fd00::1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NFSMountOptions(tc.user, tc.port)
			if err != nil {
				t.Fatalf("NFSMountOptions(%q, %d): %v", tc.user, tc.port, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("NFSMountOptions(%q, %d)\n got %q\nwant %q", tc.user, tc.port, got, tc.want)
			}
		})
	}
}

func TestNFSMountOptionsRejected(t *testing.T) {
	tests := []struct {
		name string
		user []string
		msg  string // part of the error message the user sees
	}{
		{"NFSv3", []string{"vers=3"}, "NFSv4 only"},
		{"suid", []string{"suid"}, "set-user-id"},
		{"dev", []string{"dev"}, "device file"},
		{"NFSv2 by alias", []string{"nfsvers=2"}, "NFSv4 only"},
		{"NFSv5", []string{"vers=5"}, "NFSv4 only"},
		{"kerberos", []string{"sec=krb5"}, "sec=sys"},
		{"no security", []string{"sec=none"}, "sec=sys"},
		{"nolock", []string{"nolock"}, "local to this node"},
		{"local_lock", []string{"local_lock=all"}, "local to this node"},
		{"background mount", []string{"bg"}, "before the volume is mounted"},
		{"port from user", []string{"port=2049"}, "volume context"},
		{"address from user", []string{"addr=10.0.0.1"}, "volume context"},
		{"udp", []string{"udp"}, "TCP"},
		{"proto=udp", []string{"proto=udp"}, "tcp, tcp6"},
		{"mount protocol option", []string{"mountport=635"}, "MOUNT protocol"},
		{"minorversion", []string{"minorversion=1"}, "vers=4."},
		{"remount", []string{"remount"}, "mount operations"},
		{"bind", []string{"bind"}, "mount operations"},
		{"selinux context", []string{"context=system_u:object_r:foo_t:s0"}, "SELinux"},
		{"comma injection", []string{"hard,vers=3"}, "one option per mountOptions entry"},
		{"comma injection after valid option", []string{"noatime,nolock"}, "one option per mountOptions entry"},
		{"whitespace", []string{"hard vers=3"}, "whitespace"},
		{"newline", []string{"hard\nsoft"}, "whitespace"},
		{"quote", []string{`clientaddr="1.2.3.4"`}, "quote"},
		{"empty", []string{""}, "empty option"},
		{"no name", []string{"=4"}, "no name"},
		{"unknown garbage", []string{"foo"}, "not a supported"},
		{"unknown valued", []string{"frobnicate=1"}, "not a supported"},
		{"flag with value", []string{"hard=1"}, "takes no value"},
		{"missing value", []string{"timeo"}, "needs a value"},
		{"empty value", []string{"timeo="}, "needs a value"},
		{"not a number", []string{"timeo=abc"}, "integer"},
		{"out of range", []string{"timeo=0"}, "integer"},
		{"nconnect too high", []string{"nconnect=64"}, "integer"},
		{"bad clientaddr", []string{"clientaddr=node-1"}, "IP address"},
		{"conflict hard soft", []string{"hard", "soft"}, "conflicts with"},
		{"conflict vers nfsvers", []string{"vers=4.1", "nfsvers=4.2"}, "conflicts with"},
		{"conflict ro rw", []string{"ro", "rw"}, "conflicts with"},
		{"conflict atime", []string{"noatime", "relatime"}, "conflicts with"},
		{"long option", []string{"clientaddr=" + strings.Repeat("1", 300)}, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NFSMountOptions(tc.user, 0)
			if !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("NFSMountOptions(%q) = %q, %v; want ErrInvalidOption", tc.user, got, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not explain %q", err, tc.msg)
			}
			// The same rules apply in local-bind mode.
			if _, err := bindOptions(tc.user, false); !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("bindOptions(%q) accepted what the nfs mode refuses: %v", tc.user, err)
			}
		})
	}
}

func TestNFSMountOptionsPortRange(t *testing.T) {
	for _, port := range []int{-1, 65536} {
		if _, err := NFSMountOptions(nil, port); !errors.Is(err, ErrInvalidVolume) {
			t.Errorf("port %d: got %v, want ErrInvalidVolume", port, err)
		}
	}
}

func TestDefaultOptionsAreValid(t *testing.T) {
	// The defaults must pass the rules users are held to.
	if _, err := parseUserOptions(DefaultNFSOptions); err != nil {
		t.Fatal(err)
	}
}

func TestBindOptions(t *testing.T) {
	tests := []struct {
		user     []string
		readOnly bool
		want     []string
	}{
		{nil, false, []string{"bind", "nosuid", "nodev"}},
		{nil, true, []string{"bind", "nosuid", "nodev", "ro"}},
		{[]string{"ro"}, false, []string{"bind", "nosuid", "nodev", "ro"}},
		// NFS transport options are valid but mean nothing to a bind mount.
		{[]string{"soft", "nconnect=2", "noatime"}, false, []string{"bind", "nosuid", "nodev"}},
	}
	for _, tc := range tests {
		got, err := bindOptions(tc.user, tc.readOnly)
		if err != nil {
			t.Fatalf("bindOptions(%q, %v): %v", tc.user, tc.readOnly, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("bindOptions(%q, %v) = %q, want %q", tc.user, tc.readOnly, got, tc.want)
		}
	}
}
