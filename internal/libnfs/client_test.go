package libnfs

import (
	"errors"
	"slices"
	"testing"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct {
		c            Client
		export, path string
		want         string
	}{
		{Client{Host: "127.0.0.1", Port: 2049, MountPort: 20048, Version: 3}, "/dots/pvc-1", "dir/f.txt",
			"nfs://127.0.0.1/dots/pvc-1/dir/f.txt?nfsport=2049&mountport=20048&version=3"},
		{Client{Host: "127.0.0.1", Port: 2049, Version: 4}, "/dots/pvc-1", "",
			"nfs://127.0.0.1/dots/pvc-1?nfsport=2049&version=4"},
		{Client{Host: "server.example"}, "/export/", "/a//b",
			"nfs://server.example/export/a/b"},
		{Client{Host: "[::1]", Port: 1}, "/e", "x:y@z=1,2+3",
			"nfs://[::1]/e/x:y@z=1,2+3?nfsport=1"},
	} {
		got, err := tc.c.URL(tc.export, tc.path)
		if err != nil || got != tc.want {
			t.Errorf("URL(%q, %q) = %q, %v; want %q", tc.export, tc.path, got, err, tc.want)
		}
	}
	for name, tc := range map[string]struct {
		c            Client
		export, path string
	}{
		"relative export": {Client{Host: "h"}, "dots", "f"},
		"dotdot":          {Client{Host: "h"}, "/dots", "../etc/passwd"},
		"dotdot export":   {Client{Host: "h"}, "/dots/..", "f"},
		"query in path":   {Client{Host: "h"}, "/dots", "f?nfsport=1"},
		"space":           {Client{Host: "h"}, "/dots", "a b"},
		"percent":         {Client{Host: "h"}, "/dots", "%2e%2e"},
		"host with slash": {Client{Host: "h/x"}, "/dots", "f"},
		"host with at":    {Client{Host: "u@h"}, "/dots", "f"},
		"empty host":      {Client{}, "/dots", "f"},
		"version 2":       {Client{Host: "h", Version: 2}, "/dots", "f"},
		"bad port":        {Client{Host: "h", Port: 70000}, "/dots", "f"},
	} {
		if u, err := tc.c.URL(tc.export, tc.path); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: URL = %q, %v; want ErrInvalid", name, u, err)
		}
	}
}

func TestParseList(t *testing.T) {
	out := "drwxr-xr-x  2     0     0         4096 sub\n" +
		"-rw-r--r--  1     0     0            6 a.txt\n" +
		"-rw-rw----  1    -2    -2            0 with space\n" +
		"drwxr-xr-x  3     0     0         4096 .\n"
	got, err := parseList(out)
	if err != nil || !slices.Equal(got, []string{"sub", "a.txt", "with space"}) {
		t.Errorf("parseList = %q, %v", got, err)
	}
	if got, err := parseList(""); err != nil || len(got) != 0 {
		t.Errorf("empty listing = %q, %v", got, err)
	}
	if _, err := parseList("garbage\n"); err == nil {
		t.Error("garbage accepted")
	}
}

func TestClassify(t *testing.T) {
	for stderr, want := range map[string]error{
		`creat call failed with "NFS: CREATE of /mid failed with NFS3ERR_DQUOT(-34)"`:        ErrQuota,
		`write failed with NFS4ERR_DQUOT`:                                                    ErrQuota,
		`NFS: CREATE of /x.txt failed with NFS3ERR_ROFS(-30)`:                                ErrReadOnly,
		`NFS: CREATE of /bin.dat failed with NFS3ERR_EXIST(-17)`:                             ErrExists,
		`NFS4: (path /dots/e8) failed with NFS4ERR_NOENT(-2)`:                                ErrNotFound,
		`Mount failed with error MNT3ERR_ACCES(13) Permission denied(13)`:                    ErrAccess,
		`open call failed with "NFS4: (path /) failed with NFS4ERR_GRACE(-5)"`:               ErrGrace,
		`creat call failed with "NFS: Setattr failed with NFS3ERR_JUKEBOX(-11)"`:             ErrGrace,
		`Failed to write to dest file`:                                                       nil,
		`Failed to mount nfs share : mount_cb: RPC error: Mount failed with error something`: nil,
	} {
		if got := classify(stderr); got != want {
			t.Errorf("classify(%q) = %v, want %v", stderr, got, want)
		}
	}
	te := &ToolError{Tool: "nfs-cp", URL: "nfs://h/e/f", Stderr: "NFS3ERR_DQUOT\n", Err: errors.New("exit status 10"), Kind: ErrQuota}
	if !errors.Is(te, ErrQuota) || te.Error() != "nfs-cp nfs://h/e/f: exit status 10: NFS3ERR_DQUOT" {
		t.Errorf("ToolError: %v", te)
	}
}
