package api

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Member IDs are deterministic, valid IDs whatever the lengths of the
// group's and the volume's IDs (long ones hashed).
func TestGroupMemberID(t *testing.T) {
	long := IDFor(strings.Repeat("g", 128))
	for _, c := range []struct{ group, volume string }{
		{"g", "v"},
		{long, "v"},
		{"g", strings.Repeat("v", MaxIDLen)},
		{long, IDFor(strings.Repeat("v", 100))},
	} {
		id := GroupMemberID(c.group, c.volume)
		if err := ValidateID(id); err != nil {
			t.Errorf("member of %q, %q: %q: %v", c.group, c.volume, id, err)
		}
		if again := GroupMemberID(c.group, c.volume); again != id {
			t.Errorf("member of %q, %q: %q then %q", c.group, c.volume, id, again)
		}
	}
	if GroupMemberID("g", "a") == GroupMemberID("g", "b") {
		t.Error("two volumes of one group got the same member ID")
	}
}

func TestCheckGroupRequest(t *testing.T) {
	many := make([]string, MaxGroupMembers+1)
	for i := range many {
		many[i] = fmt.Sprintf("v%d", i)
	}
	for _, c := range []struct {
		what    string
		name    string
		volumes []string
		ok      bool
	}{
		{"valid", "g", []string{"a", "b"}, true},
		{"the most volumes", "g", many[:MaxGroupMembers], true},
		{"no name", "", []string{"a"}, false},
		{"bad name", "g/1", []string{"a"}, false},
		{"no volumes", "g", nil, false},
		{"too many volumes", "g", many, false},
		{"empty volume", "g", []string{"a", ""}, false},
		{"volume twice", "g", []string{"a", "a"}, false},
	} {
		err := CheckGroupRequest(c.name, c.volumes)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("%s: %v, want ok %v (else ErrInvalid)", c.what, err, c.ok)
		}
	}
}
