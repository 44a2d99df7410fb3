package capacity

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "1Ki": 1024, "1Gi": 1 << 30, "3Mi": 3 << 20, "2G": 2e9, "10k": 10000} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5Gi", "1Zi", "Gi", "99999999999Pi", "1 Gi x"} {
		if _, err := ParseSize(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSize(%q) err = %v, want ErrInvalid", in, err)
		}
	}
}

func TestHuman(t *testing.T) {
	if Human(1536<<20) != "1.5GiB" || Human(10) != "10B" {
		t.Fatalf("Human wrong: %s %s", Human(1536<<20), Human(10))
	}
}
