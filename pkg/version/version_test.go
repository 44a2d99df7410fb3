package version

import (
	"runtime/debug"
	"testing"
)

func TestBuildRevision(t *testing.T) {
	vcs := func(kv ...string) *debug.BuildInfo {
		info := &debug.BuildInfo{}
		for i := 0; i < len(kv); i += 2 {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return info
	}
	for _, c := range []struct {
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{nil, false, "unknown"},
		{vcs(), true, "unknown"},
		{vcs("vcs.revision", "abc", "vcs.modified", "false"), true, "abc"},
		{vcs("vcs.revision", "abc", "vcs.modified", "true"), true, "abc-dirty"},
	} {
		if got := buildRevision(c.info, c.ok); got != c.want {
			t.Errorf("buildRevision(%v) = %q, want %q", c.info, got, c.want)
		}
	}
}

func TestRevisionPrefersTheLinkersStamp(t *testing.T) {
	defer func(old string) { revision = old }(revision)
	revision = "0123abc"
	if got := Revision(); got != "0123abc" {
		t.Errorf("Revision() = %q", got)
	}
}
