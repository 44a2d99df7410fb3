package volumeid

import (
	"errors"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range [][2]string{{"dots-server-0", "pvc-1234"}, {"a", "x"}, {"s1", "snap.2024-01-01:x_y"}} {
		s, n, err := Parse(Format(c[0], c[1]))
		if err != nil || s != c[0] || n != c[1] {
			t.Fatalf("Parse(Format(%q, %q)) = %q, %q, %v", c[0], c[1], s, n, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, id := range []string{"", "noslash", "/name", "server/", "Server/x", "s/a/b", "s/../x", "s/a b", "s/a;rm",
		"s/" + strings.Repeat("x", 130), "a-very-long-server-name-over-limit/x", "s/@snap", "-s/x"} {
		if _, _, err := Parse(id); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) err = %v, want ErrMalformed", id, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("dots-server-0/pvc-1")
	f.Add("a/b/c")
	f.Add("x/..")
	f.Fuzz(func(t *testing.T, id string) {
		s, n, err := Parse(id)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if Format(s, n) != id {
			t.Fatalf("Format(Parse(%q)) = %q", id, Format(s, n))
		}
		if strings.ContainsAny(n, "/@ ") || strings.Contains(n, "..") {
			t.Fatalf("unsafe name %q accepted", n)
		}
	})
}
