package testenv

import (
	"slices"
	"testing"
)

func TestVdevFiles(t *testing.T) {
	status := "  pool: dotsz-x\n state: ONLINE\n scrub: none requested\nconfig:\n\n" +
		"\tNAME             STATE     READ WRITE CKSUM\n" +
		"\tdotsz-x          ONLINE       0     0     0\n" +
		"\t  /tmp/a/p.img   ONLINE       0     0     0\n" +
		"\t  mirror-0       ONLINE       0     0     0\n" +
		"\t    /tmp/b.img   ONLINE       0     0     0\n" +
		"\nerrors: No known data errors\n"
	if got := vdevFiles(status); !slices.Equal(got, []string{"/tmp/a/p.img", "/tmp/b.img"}) {
		t.Errorf("vdevFiles = %v", got)
	}
}

func TestPoolOwner(t *testing.T) {
	for name, want := range map[string]int{"dotsz-123-abcd": 123, "dotslocal-1a2b-0": 0, "zz-1-a": 0, "dotsz-x-a": 0, "dotsz-1": 0} {
		pid, ok := poolOwner(name)
		if (want != 0) != ok || pid != want {
			t.Errorf("poolOwner(%q) = %d, %v; want %d", name, pid, ok, want)
		}
	}
}
