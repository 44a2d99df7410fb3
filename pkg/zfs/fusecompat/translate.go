package fusecompat

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// getChunk bounds how many dataset names one `zfs get` receives, keeping
// argv far below the kernel's limit at any dataset count.
const getChunk = 256

// Properties go-zfs asks for that zfs-fuse does not have: they are printed
// as "-" without asking. Any other property zfs-fuse refuses is found by
// its error message and dropped the same way.
var (
	missingZFS   = []string{"written", "logicalused"}
	missingZpool = []string{"readonly", "fragmentation", "freeing", "leaked"}
)

var invalidPropRE = regexp.MustCompile(`invalid property '([^']+)'`)

// zpool properties that are sizes: `zpool get -p` prints them in bytes.
var zpoolSizeProps = map[string]bool{
	"size": true, "allocated": true, "free": true, "freeing": true, "leaked": true, "expandsize": true,
}

// parsedOpts is a getopt-style parse (options may follow operands, as with
// glibc's getopt).
type parsedOpts struct {
	flags    map[byte]bool
	values   map[byte][]string
	operands []string
}

// getopt parses args; withArg lists option letters taking a value, known
// all letters accepted. ok is false for an unknown letter or a missing
// value: the caller then passes the call through untouched.
func getopt(args []string, withArg, known string) (parsedOpts, bool) {
	o := parsedOpts{flags: map[byte]bool{}, values: map[byte][]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.operands = append(o.operands, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			o.operands = append(o.operands, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			if !strings.ContainsRune(known, rune(c)) {
				return o, false
			}
			if !strings.ContainsRune(withArg, rune(c)) {
				o.flags[c] = true
				continue
			}
			v := a[j+1:]
			if v == "" {
				if i+1 >= len(args) {
					return o, false
				}
				i++
				v = args[i]
			}
			o.values[c] = append(o.values[c], v)
			break
		}
	}
	return o, true
}

func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		out = append(out, strings.Split(v, ",")...)
	}
	return out
}

// zfsList translates `zfs list ... -p -H -o PROPS [names]` (go-zfs's
// listing) into `zfs list -H -o name` followed by `zfs get -Hp` of the
// properties zfs-fuse has, assembling the columns in the order asked.
func (s *shim) zfsList(args []string) int {
	o, ok := getopt(args, "otdsS", "rHpotdsS")
	if !ok || !o.flags['p'] {
		return s.pass(append([]string{"list"}, args...))
	}
	list := []string{"list"}
	for _, f := range "rH" {
		if o.flags[byte(f)] {
			list = append(list, "-"+string(f))
		}
	}
	for _, f := range "dtsS" {
		for _, v := range o.values[byte(f)] {
			list = append(list, "-"+string(f), v)
		}
	}
	props := splitList(o.values['o'])
	if !o.flags['H'] || len(props) == 0 {
		// Not go-zfs's form: drop -p and let zfs print human sizes.
		for _, v := range o.values['o'] {
			list = append(list, "-o", v)
		}
		return s.pass(append(list, o.operands...))
	}
	list = append(list, "-o", "name")
	out, errOut, code := s.capture(append(list, o.operands...)...)
	names := lines(out)
	vals, gerr, gcode := s.getValues(names, props)
	if gcode != 0 {
		fmt.Fprint(s.stderr, gerr)
		return gcode
	}
	var b strings.Builder
	for _, n := range names {
		for i, p := range props {
			if i > 0 {
				b.WriteByte('\t')
			}
			switch v, ok := vals[n][p]; {
			case p == "name":
				b.WriteString(n)
			case ok:
				b.WriteString(v)
			default:
				b.WriteByte('-')
			}
		}
		b.WriteByte('\n')
	}
	fmt.Fprint(s.stdout, b.String())
	fmt.Fprint(s.stderr, errOut)
	return code
}

// getValues runs `zfs get -Hp` for names in chunks, dropping properties
// zfs-fuse refuses. Values come back per dataset and property.
func (s *shim) getValues(names, props []string) (map[string]map[string]string, string, int) {
	skip := map[string]bool{"name": true}
	for _, m := range missingZFS {
		skip[m] = true
	}
	var query []string
	for _, p := range props {
		if !skip[p] && !slices.Contains(query, p) {
			query = append(query, p)
		}
	}
	vals := map[string]map[string]string{}
	for start := 0; start < len(names) && len(query) > 0; {
		end := min(start+getChunk, len(names))
		args := append([]string{"get", "-Hp", "-o", "name,property,value", strings.Join(query, ",")}, names[start:end]...)
		out, errOut, code := s.capture(args...)
		if code != 0 {
			if m := invalidPropRE.FindStringSubmatch(errOut); m != nil && slices.Contains(query, m[1]) {
				query = remove(query, m[1])
				continue // same chunk again without it
			}
			return nil, errOut, code
		}
		for _, l := range lines(out) {
			f := strings.SplitN(l, "\t", 3)
			if len(f) != 3 {
				continue
			}
			if vals[f[0]] == nil {
				vals[f[0]] = map[string]string{}
			}
			vals[f[0]][f[1]] = f[2]
		}
		start = end
	}
	return vals, "", 0
}

// zpoolGet translates `zpool get -Hp PROPS [pools]` (go-zfs's GetZpool):
// zfs-fuse's zpool get takes no flags and prints a table with rounded
// sizes. Sizes are converted back to bytes, as exact as zpool printed them.
func (s *shim) zpoolGet(args []string) int {
	o, ok := getopt(args, "", "Hp")
	if !ok || (!o.flags['H'] && !o.flags['p']) || len(o.operands) == 0 {
		return s.pass(append([]string{"get"}, args...))
	}
	props := strings.Split(o.operands[0], ",")
	pools := o.operands[1:]
	query := []string{}
	for _, p := range props {
		if !slices.Contains(missingZpool, p) && !slices.Contains(query, p) {
			query = append(query, p)
		}
	}
	type row struct{ value, source string }
	got := map[string]map[string]row{}
	var order []string
	for len(query) > 0 {
		out, errOut, code := s.capture(append([]string{"get", strings.Join(query, ",")}, pools...)...)
		if code != 0 {
			if m := invalidPropRE.FindStringSubmatch(errOut); m != nil && slices.Contains(query, m[1]) {
				query = remove(query, m[1])
				continue
			}
			fmt.Fprint(s.stderr, errOut)
			return code
		}
		for _, l := range lines(out) {
			f := strings.Fields(l)
			if len(f) < 4 || (f[0] == "NAME" && f[1] == "PROPERTY") {
				continue
			}
			if got[f[0]] == nil {
				got[f[0]] = map[string]row{}
				order = append(order, f[0])
			}
			got[f[0]][f[1]] = row{value: strings.Join(f[2:len(f)-1], " "), source: f[len(f)-1]}
		}
		break
	}
	if len(order) == 0 {
		order = pools
	}
	var b strings.Builder
	if !o.flags['H'] {
		b.WriteString("NAME\tPROPERTY\tVALUE\tSOURCE\n")
	}
	for _, pool := range order {
		for _, p := range props {
			r, ok := got[pool][p]
			if !ok {
				r = row{value: "-", source: "-"}
			}
			if o.flags['p'] && zpoolSizeProps[p] {
				if n, err := parseHumanSize(r.value); err == nil {
					r.value = strconv.FormatInt(n, 10)
				}
			}
			fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", pool, p, r.value, r.source)
		}
	}
	fmt.Fprint(s.stdout, b.String())
	return 0
}

// parseHumanSize reads zpool's sizes: "0", "512", "788K", "1016M", "1.50G".
func parseHumanSize(v string) (int64, error) {
	if v == "" || v == "-" {
		return 0, fmt.Errorf("no size: %q", v)
	}
	mult := 1.0
	if i := strings.IndexAny(v, "KMGTPE"); i >= 0 {
		if i != len(v)-1 {
			return 0, fmt.Errorf("bad size %q", v)
		}
		mult = math.Pow(1024, float64(strings.IndexByte("KMGTPE", v[i])+1))
		v = v[:i]
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return int64(math.Round(f * mult)), nil
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func remove(list []string, s string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(v string) bool { return v == s })
}
