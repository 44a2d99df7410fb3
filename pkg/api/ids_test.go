package api

import (
	"errors"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range [][2]string{{"dots-server-0", "pvc-1234"}, {"a", "x"}, {"s1", "snap.2024-01-01:x_y"}} {
		s, n, err := ParseID(FormatID(c[0], c[1]))
		if err != nil || s != c[0] || n != c[1] {
			t.Fatalf("ParseID(FormatID(%q, %q)) = %q, %q, %v", c[0], c[1], s, n, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, id := range []string{"", "noslash", "/name", "server/", "Server/x", "s/a/b", "s/../x", "s/a b", "s/a;rm",
		"s/" + strings.Repeat("x", 130), "a-very-long-server-name-over-limit/x", "s/@snap", "-s/x"} {
		if _, _, err := ParseID(id); !errors.Is(err, ErrMalformedID) {
			t.Errorf("Parse(%q) err = %v, want ErrMalformedID", id, err)
		}
	}
}

func FuzzParseID(f *testing.F) {
	f.Add("dots-server-0/pvc-1")
	f.Add("a/b/c")
	f.Add("x/..")
	f.Fuzz(func(t *testing.T, id string) {
		s, n, err := ParseID(id)
		if err != nil {
			if !errors.Is(err, ErrMalformedID) {
				t.Fatalf("error %v is not ErrMalformedID", err)
			}
			return
		}
		if FormatID(s, n) != id {
			t.Fatalf("FormatID(ParseID(%q)) = %q", id, FormatID(s, n))
		}
		if strings.ContainsAny(n, "/@ ") || strings.Contains(n, "..") {
			t.Fatalf("unsafe name %q accepted", n)
		}
	})
}
