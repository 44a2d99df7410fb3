package fusecompat

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// fakeZFS plays zfs-fuse's CLI: it answers by argv and records every call.
type fakeZFS struct {
	calls   [][]string
	answers map[string]answer // key: argv after the binary, joined by spaces
}

type answer struct {
	stdout, stderr string
	code           int
}

func (f *fakeZFS) Run(argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	f.calls = append(f.calls, argv)
	key := strings.Join(argv[1:], " ")
	a, ok := f.answers[key]
	if !ok {
		return 2, fmt.Errorf("unexpected call %q", key)
	}
	if stdin != nil {
		if b, _ := io.ReadAll(stdin); len(b) > 0 {
			fmt.Fprintf(stdout, "stdin:%s", b)
		}
	}
	fmt.Fprint(stdout, a.stdout)
	fmt.Fprint(stderr, a.stderr)
	return a.code, nil
}

func runShim(t *testing.T, f *fakeZFS, argv ...string) (string, string, int) {
	t.Helper()
	t.Setenv(EnvRealZFS, "/real/zfs")
	t.Setenv(EnvRealZpool, "/real/zpool")
	var out, errOut bytes.Buffer
	code := run(argv, f, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

const goZFSProps = "name,origin,used,available,mountpoint,compression,type,volsize,quota,referenced,written,logicalused,usedbydataset"
const getProps = "origin,used,available,mountpoint,compression,type,volsize,quota,referenced,usedbydataset"

func getOutput(name string, vals ...string) string {
	props := strings.Split(getProps, ",")
	var b strings.Builder
	for i, p := range props {
		fmt.Fprintf(&b, "%s\t%s\t%s\n", name, p, vals[i])
	}
	return b.String()
}

func TestListTranslation(t *testing.T) {
	f := &fakeZFS{answers: map[string]answer{
		"list -r -H -t filesystem -o name p": {stdout: "p\np/a\n"},
		"get -Hp -o name,property,value " + getProps + " p p/a": {stdout: getOutput("p", "-", "300", "700", "/mnt", "off", "filesystem", "-", "0", "100", "100") +
			getOutput("p/a", "p/b@s", "200", "700", "/mnt/a b", "gzip", "filesystem", "-", "0", "50", "50")},
	}}
	out, errOut, code := runShim(t, f, "zfs", "list", "-rHp", "-t", "filesystem", "-o", goZFSProps, "p")
	if code != 0 || errOut != "" {
		t.Fatalf("code %d, stderr %q, calls %v", code, errOut, f.calls)
	}
	want := "p\t-\t300\t700\t/mnt\toff\tfilesystem\t-\t0\t100\t-\t-\t100\n" +
		"p/a\tp/b@s\t200\t700\t/mnt/a b\tgzip\tfilesystem\t-\t0\t50\t-\t-\t50\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	for _, c := range f.calls {
		if c[0] != "/real/zfs" {
			t.Errorf("ran %q, not the real zfs", c[0])
		}
	}
}

// TestListSingleDataset is go-zfs's GetDataset: `list -Hp -o PROPS NAME`.
func TestListSingleDataset(t *testing.T) {
	f := &fakeZFS{answers: map[string]answer{
		"list -H -o name p/a@s":                          {stdout: "p/a@s\n"},
		"get -Hp -o name,property,value used,type p/a@s": {stdout: "p/a@s\tused\t0\np/a@s\ttype\tsnapshot\n"},
	}}
	out, _, code := runShim(t, f, "zfs", "list", "-Hp", "-o", "name,used,written,type", "p/a@s")
	if code != 0 || out != "p/a@s\t0\t-\tsnapshot\n" {
		t.Errorf("code %d, output %q", code, out)
	}
}

// TestListDropsUnknownProperty: a property zfs-fuse refuses that is not in
// the known list is found from the error and printed as "-".
func TestListDropsUnknownProperty(t *testing.T) {
	f := &fakeZFS{answers: map[string]answer{
		"list -H -d 1 -t all -o name p":                    {stdout: "p\n"},
		"get -Hp -o name,property,value used,encryption p": {stderr: "bad property list: invalid property 'encryption'\nusage: ...", code: 2},
		"get -Hp -o name,property,value used p":            {stdout: "p\tused\t5\n"},
	}}
	out, _, code := runShim(t, f, "zfs", "list", "-d", "1", "-t", "all", "-Hp", "-o", "name,used,encryption", "p")
	if code != 0 || out != "p\t5\t-\n" {
		t.Errorf("code %d, output %q, calls %v", code, out, f.calls)
	}
}

func TestListMissingDataset(t *testing.T) {
	f := &fakeZFS{answers: map[string]answer{
		"list -H -o name p/x": {stderr: "cannot open 'p/x': dataset does not exist\n", code: 1},
	}}
	out, errOut, code := runShim(t, f, "zfs", "list", "-Hp", "-o", goZFSProps, "p/x")
	if code != 1 || out != "" || !strings.Contains(errOut, "does not exist") {
		t.Errorf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if len(f.calls) != 1 {
		t.Errorf("calls = %v, want only the list", f.calls)
	}
}

func TestListGetFailurePropagates(t *testing.T) {
	f := &fakeZFS{answers: map[string]answer{
		"list -H -o name p/a":                     {stdout: "p/a\n"},
		"get -Hp -o name,property,value used p/a": {stderr: "cannot open 'p/a': dataset does not exist\n", code: 1},
	}}
	_, errOut, code := runShim(t, f, "zfs", "list", "-Hp", "-o", "name,used", "p/a")
	if code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}

func TestListChunks(t *testing.T) {
	var names []string
	for i := range getChunk + 3 {
		names = append(names, fmt.Sprintf("p/v%d", i))
	}
	get := func(ns []string) (string, answer) {
		var b strings.Builder
		for _, n := range ns {
			fmt.Fprintf(&b, "%s\tused\t1\n", n)
		}
		return "get -Hp -o name,property,value used " + strings.Join(ns, " "), answer{stdout: b.String()}
	}
	f := &fakeZFS{answers: map[string]answer{"list -r -H -o name p": {stdout: "p\n" + strings.Join(names, "\n") + "\n"}}}
	all := append([]string{"p"}, names...)
	k1, a1 := get(all[:getChunk])
	k2, a2 := get(all[getChunk:])
	f.answers[k1], f.answers[k2] = a1, a2
	out, _, code := runShim(t, f, "zfs", "list", "-r", "-H", "-p", "-o", "name,used", "p")
	if code != 0 || strings.Count(out, "\t1\n") != len(all) {
		t.Errorf("code %d, %d lines", code, strings.Count(out, "\n"))
	}
	if len(f.calls) != 3 {
		t.Errorf("%d calls, want list + 2 gets", len(f.calls))
	}
}

func TestPassThrough(t *testing.T) {
	f := &fakeZFS{answers: map[string]answer{
		"get -Hp refquota p/a":          {stdout: "p/a\trefquota\t10\tlocal\n"},
		"destroy -d p/a@s":              {stderr: "cannot destroy: busy\n", code: 1},
		"list -H -o name":               {stdout: "p\n"},
		"receive p/b":                   {stdout: ""},
		"list -rH -o name,used -s used": {stdout: "x\n"},
	}}
	cases := []struct {
		argv       []string
		out, err   string
		code       int
		passedArgv string
	}{
		{[]string{"zfs", "get", "-Hp", "refquota", "p/a"}, "p/a\trefquota\t10\tlocal\n", "", 0, "get -Hp refquota p/a"},
		{[]string{"zfs", "destroy", "-d", "p/a@s"}, "", "cannot destroy: busy\n", 1, "destroy -d p/a@s"},
		{[]string{"zfs", "list", "-H", "-o", "name"}, "p\n", "", 0, "list -H -o name"},
		{[]string{"zfs", "list", "-rH", "-o", "name,used", "-s", "used"}, "x\n", "", 0, "list -rH -o name,used -s used"},
	}
	for _, c := range cases {
		f.calls = nil
		out, errOut, code := runShim(t, f, c.argv...)
		if out != c.out || errOut != c.err || code != c.code || len(f.calls) != 1 || strings.Join(f.calls[0][1:], " ") != c.passedArgv {
			t.Errorf("%v: out %q err %q code %d calls %v", c.argv, out, errOut, code, f.calls)
		}
	}
	// stdin reaches the real binary (zfs receive).
	f.calls = nil
	t.Setenv(EnvRealZFS, "/real/zfs")
	var out bytes.Buffer
	if code := run([]string{"zfs", "receive", "p/b"}, f, strings.NewReader("STREAM"), &out, io.Discard); code != 0 || out.String() != "stdin:STREAM" {
		t.Errorf("receive: code %d, out %q", code, out.String())
	}
}

// TestListWithoutHPassesThrough: -p without -H is not go-zfs's form; the
// shim drops -p and lets zfs print its table.
func TestListWithoutHPassesThrough(t *testing.T) {
	f := &fakeZFS{answers: map[string]answer{"list -r -o name,used p": {stdout: "NAME USED\np 1K\n"}}}
	out, _, code := runShim(t, f, "zfs", "list", "-rp", "-o", "name,used", "p")
	if code != 0 || out != "NAME USED\np 1K\n" {
		t.Errorf("code %d out %q calls %v", code, out, f.calls)
	}
}

func TestZpoolGet(t *testing.T) {
	table := "NAME   PROPERTY    VALUE   SOURCE\n" +
		"p      name        p       -\n" +
		"p      health      ONLINE  -\n" +
		"p      allocated   788K    -\n" +
		"p      size        1016M   -\n" +
		"p      free        1.50G   -\n" +
		"p      dedupratio  1.00x   -\n"
	f := &fakeZFS{answers: map[string]answer{
		"get name,health,allocated,size,free,dedupratio p": {stdout: table},
	}}
	out, errOut, code := runShim(t, f, "zpool", "get", "-Hp", "name,health,allocated,size,free,readonly,dedupratio,fragmentation,freeing,leaked", "p")
	want := "p\tname\tp\t-\n" +
		"p\thealth\tONLINE\t-\n" +
		"p\tallocated\t806912\t-\n" +
		"p\tsize\t1065353216\t-\n" +
		"p\tfree\t1610612736\t-\n" +
		"p\treadonly\t-\t-\n" +
		"p\tdedupratio\t1.00x\t-\n" +
		"p\tfragmentation\t-\t-\n" +
		"p\tfreeing\t-\t-\n" +
		"p\tleaked\t-\t-\n"
	if code != 0 || out != want {
		t.Errorf("code %d stderr %q calls %v output:\n%s", code, errOut, f.calls, out)
	}
	for _, c := range f.calls {
		if c[0] != "/real/zpool" {
			t.Errorf("ran %q", c[0])
		}
	}

	f = &fakeZFS{answers: map[string]answer{"get size nope": {stderr: "cannot open 'nope': no such pool\n", code: 1}}}
	_, errOut, code = runShim(t, f, "zpool", "get", "-Hp", "size", "nope")
	if code != 1 || !strings.Contains(errOut, "no such pool") {
		t.Errorf("missing pool: code %d stderr %q", code, errOut)
	}

	f = &fakeZFS{answers: map[string]answer{"list -H -o name": {stdout: "p\n"}}}
	if out, _, code := runShim(t, f, "zpool", "list", "-H", "-o", "name"); code != 0 || out != "p\n" {
		t.Errorf("zpool list not passed through: %d %q", code, out)
	}
}

func TestParseHumanSize(t *testing.T) {
	cases := map[string]int64{"0": 0, "512": 512, "788K": 788 << 10, "1016M": 1016 << 20, "1.50G": 3 << 29, "2T": 2 << 40}
	for in, want := range cases {
		if got, err := parseHumanSize(in); err != nil || got != want {
			t.Errorf("parseHumanSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-", "1.2.3M", "M", "12MB", "-1K"} {
		if _, err := parseHumanSize(in); err == nil {
			t.Errorf("parseHumanSize(%q) accepted", in)
		}
	}
}

func TestGetopt(t *testing.T) {
	o, ok := getopt([]string{"-rHp", "-tsnapshot", "-o", "name,used", "p", "-d", "2", "--", "-weird"}, "otdsS", "rHpotdsS")
	if !ok || !o.flags['r'] || !o.flags['H'] || !o.flags['p'] || o.values['t'][0] != "snapshot" ||
		o.values['o'][0] != "name,used" || o.values['d'][0] != "2" || strings.Join(o.operands, " ") != "p -weird" {
		t.Errorf("getopt = %+v, %v", o, ok)
	}
	if _, ok := getopt([]string{"-x"}, "o", "o"); ok {
		t.Error("unknown flag accepted")
	}
	if _, ok := getopt([]string{"-o"}, "o", "o"); ok {
		t.Error("missing value accepted")
	}
}

func TestShimRefusesWithoutRealBinary(t *testing.T) {
	t.Setenv(EnvRealZFS, "")
	var errOut bytes.Buffer
	if code := run([]string{"/x/zfs", "list"}, &fakeZFS{}, nil, io.Discard, &errOut); code != 127 || !strings.Contains(errOut.String(), EnvRealZFS) {
		t.Errorf("code %d, stderr %q", code, errOut.String())
	}
	if code := run([]string{"dots", "list"}, &fakeZFS{}, nil, io.Discard, io.Discard); code != 2 {
		t.Errorf("not started as zfs: code %d", code)
	}
}
