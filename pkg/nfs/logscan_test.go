package nfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Lines as ganesha 4.3 wrote them on this project's machines.
const (
	lgPrefix      = "22/11/2026 07:39:07 : epoch 6b029c0b : vm : nfs-ganesha-6742[sigmgr] "
	lgGrace       = "22/11/2026 07:39:06 : epoch 6b029c0b : vm : nfs-ganesha-6742[reaper] nfs_lift_grace_locked :STATE :EVENT :NFS Server Now NOT IN GRACE"
	lgHUP         = lgPrefix + "sigmgr_thread :MAIN :EVENT :SIGHUP_HANDLER: Received SIGHUP.... initiating export list reload"
	lgDone        = lgPrefix + "reread_exports :CONFIG :EVENT :Reread exports complete"
	lgStat        = lgPrefix + "resolve_posix_filesystem :FSAL :CRIT :stat returned No such file or directory (2) while resolving export path /x/gone"
	lgMdcache     = lgPrefix + "mdcache_fsal_create_export :FSAL :MAJ :Failed to call create_export on underlying FSAL VFS"
	lgCreate      = lgPrefix + "fsal_cfg_commit :CONFIG :CRIT :Could not create export for (/dots/gone) to (/x/gone)"
	lgBlockFSAL   = lgPrefix + "config_errs_to_log :CONFIG :CRIT :Config File (/run/g/exports.d/7.conf:14): 1 validation errors in block FSAL"
	lgBlockExport = lgPrefix + "config_errs_to_log :CONFIG :CRIT :Config File (/run/g/exports.d/7.conf:1): 1 validation errors in block EXPORT"
	lgPathUpdate  = lgPrefix + "export_commit_common :CONFIG :CRIT :Path for export update 8 /x/new doesn't match /x/old"
	lgBlock14     = lgPrefix + "config_errs_to_log :CONFIG :CRIT :Config File (/run/g/exports.d/8.conf:1): Errors processing block (EXPORT)"
	lgParseFailed = lgPrefix + "reread_config :CONFIG :CRIT :Error while parsing EXPORT entries"
	lgDBus        = "22/11/2026 07:38:51 : epoch 6b029c0b : vm : nfs-ganesha-6742[main] gsh_dbus_pkginit :DBUS :CRIT :dbus_bus_get failed (Failed to connect to socket)"
	lgStarted     = "22/11/2026 07:38:51 : epoch 6b029c0b : vm : nfs-ganesha-6742[main] nfs_start :NFS STARTUP :EVENT :             NFS SERVER INITIALIZED"
)

func TestReloadScan(t *testing.T) {
	s := &reloadScan{}
	for _, l := range []string{lgStat, lgGrace} { // before our SIGHUP: ignored
		s.feed(l)
	}
	if s.started || len(s.problems) != 0 {
		t.Fatalf("lines before the SIGHUP counted: %+v", s)
	}
	s.feed(lgHUP)
	s.feed(lgStat)
	s.feed(lgCreate)
	if !s.started || s.done {
		t.Fatalf("after SIGHUP: %+v", s)
	}
	s.feed(lgDone)
	s.feed(lgBlockExport) // reported after completion, still collected
	if !s.done || s.failed != "" {
		t.Fatalf("after completion: %+v", s)
	}
	if len(s.problems) != 3 || !strings.HasPrefix(s.problems[1], "Could not create export for (/dots/gone)") {
		t.Errorf("problems %q", s.problems)
	}

	f := &reloadScan{}
	for _, l := range []string{lgHUP, lgParseFailed} {
		f.feed(l)
	}
	if !f.done || !strings.Contains(f.failed, "Error while parsing EXPORT entries") {
		t.Errorf("failed reload not detected: %+v", f)
	}
}

func TestStartScan(t *testing.T) {
	s := &startScan{}
	for _, l := range []string{lgDBus, lgCreate, lgStarted, lgStat} {
		s.feed(l)
	}
	if !s.done || len(s.problems) != 2 {
		t.Errorf("start scan %+v", s)
	}
}

func TestFailedExports(t *testing.T) {
	exports := map[uint32]Export{
		5: {ID: 5, Path: "/x/gone", Pseudo: "/dots/gone"},
		6: {ID: 6, Path: "/x/ok", Pseudo: "/dots/ok"},
		7: {ID: 7, Path: "/x/other", Pseudo: "/dots/other"},
		8: {ID: 8, Path: "/x/new", Pseudo: "/dots/new"},
	}
	problems := []string{}
	for _, l := range []string{lgDBus, lgStat, lgMdcache, lgCreate, lgBlockFSAL, lgBlockExport} {
		if msg, ok := problem(l); ok {
			problems = append(problems, msg)
		}
	}
	got := failedExports(problems, "/run/g/exports.d", exports)
	// 5 by "Could not create export for (/dots/gone)", 7 by its block's file.
	if len(got) != 2 || got[5] == "" || got[7] == "" {
		t.Fatalf("failed %v", got)
	}
	if !strings.Contains(got[5], "while resolving export path /x/gone") {
		t.Errorf("reason for 5: %q", got[5])
	}
	// Another directory's 7.conf, or an export we do not know, is not ours.
	for _, msg := range []string{"Config File (/etc/7.conf:1): 1 validation errors in block EXPORT",
		"Config File (/run/g/exports.d/9.conf:1): 1 validation errors in block EXPORT"} {
		if got := failedExports([]string{msg}, "/run/g/exports.d", exports); len(got) != 0 {
			t.Errorf("%s matched: %v", msg, got)
		}
	}
	if got := failedExports([]string{"Config File (/run/g/exports.conf:1): 1 validation errors in block EXPORT"}, "/run/g/exports.d", exports); len(got) != 0 {
		t.Errorf("foreign file matched: %v", got)
	}
	// An export whose path is a prefix of another's is not blamed for it.
	long := map[uint32]Export{1: {ID: 1, Path: "/x/go", Pseudo: "/dots/go"}}
	if got := failedExports(problems, "/run/g/exports.d", long); len(got) != 0 {
		t.Errorf("prefix matched: %v", got)
	}
	// Path change.
	problems = nil
	for _, l := range []string{lgPathUpdate, lgBlock14} {
		msg, _ := problem(l)
		problems = append(problems, msg)
	}
	got = failedExports(problems, "/run/g/exports.d", exports)
	if len(got) != 1 || !strings.Contains(got[8], "doesn't match") {
		t.Errorf("path update: %v", got)
	}
}

func TestMentions(t *testing.T) {
	for _, tc := range []struct {
		msg, word string
		want      bool
	}{
		{"export path /a/b", "/a/b", true},
		{"for (/a/b) to", "/a/b", true},
		{"export path /a/bc", "/a/b", false},
		{"export path /a/b/c", "/a/b", false},
		{"/a/b/c and (/a/b)", "/a/b", true},
		{"/a/b.", "/a/b", false},
		{"/a/b/c and /a/b", "/a/b", true},
	} {
		if got := mentions(tc.msg, tc.word); got != tc.want {
			t.Errorf("mentions(%q, %q) = %v", tc.msg, tc.word, got)
		}
	}
}

func TestLogTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	tail := &logTail{path: p}
	if lines, err := tail.lines(); err != nil || len(lines) != 0 {
		t.Fatalf("missing file: %v %v", lines, err)
	}
	write := func(s string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	write("one\ntw")
	if lines, _ := tail.lines(); len(lines) != 1 || lines[0] != "one" {
		t.Fatalf("first read %q", lines)
	}
	write("o\nthree\n")
	if lines, _ := tail.lines(); len(lines) != 2 || lines[0] != "two" || lines[1] != "three" {
		t.Fatalf("second read %q", lines)
	}
	if err := os.WriteFile(p, []byte("new\n"), 0o644); err != nil { // replaced by a shorter file
		t.Fatal(err)
	}
	if lines, _ := tail.lines(); len(lines) != 1 || lines[0] != "new" {
		t.Fatalf("after truncation %q", lines)
	}
}
