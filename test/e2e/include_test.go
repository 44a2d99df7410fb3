package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// The exports file includes lists, which include one file per export.
func TestReadIncluding(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e1 := write("1.conf", "EXPORT {\n\tPseudo = \"/a\";\n}\n")
	list := write("list-001.conf", "# list\n%include \""+e1+"\"\n")
	top := write("exports.conf", "# top\n%include \""+list+"\"\n")
	got, err := readIncluding(top, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# top\n# list\nEXPORT {\n\tPseudo = \"/a\";\n}\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if found, _ := parseExportACL(got, "/a"); !found {
		t.Error("the export is not found through the includes")
	}
	loop := write("loop.conf", "")
	_ = os.WriteFile(loop, []byte("%include \""+loop+"\"\n"), 0o644)
	if _, err := readIncluding(loop, 0); err == nil {
		t.Error("an include loop was read")
	}
}
