package mounter

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Mount option rules of the nfs mode.
//
// Every volume is mounted with DefaultNFSOptions (plus port=N when the volume
// context names a port). The volume capability's mount flags (a
// StorageClass's mountOptions) are merged into them:
//
//   - One option per entry: an entry holding ',' (or whitespace, quotes or
//     control characters) is refused, so nothing can be smuggled past the
//     per-option checks below.
//   - Only known NFSv4 client options and the generic VFS flags listed in
//     nfsRules are accepted; anything else is refused as unknown.
//   - Options form families (hard/soft/softerr, ro/rw, vers/nfsvers, ...).
//     A user option replaces the default of its family; two different user
//     options of one family (hard and soft, vers=4.1 and nfsvers=4.2) are a
//     conflict and refused. Repeating the same option is harmless.
//   - Refused because dots serves NFSv4 only, with sec=sys: vers/nfsvers
//     other than 4, 4.0, 4.1, 4.2; udp and the NFSv2/3 MOUNT-protocol
//     options; sec= other than sys.
//   - Refused because they are dangerous: nolock and local_lock (locks would
//     be local to one node, silently breaking locking between nodes), bg (the
//     mount would report success before the volume is mounted), port and
//     addr (set by the driver from the volume context), and mount(8)
//     operations such as remount or bind.
//
// The local-bind mode validates flags with the same rules, so a StorageClass
// behaves alike in both modes, and then applies only ro to its bind mount.

// DefaultNFSOptions are the options every nfs-mode mount starts from: NFSv4.1,
// hard mounts that retry (timeo in tenths of a second) rather than return I/O
// errors to applications, and a non-privileged source port so reconnects
// after a server failover do not wait for a reserved port.
// nosuid and nodev: a set-user-id program or a device file written to a
// shared volume must not become root or a device on every node that mounts
// it.
var DefaultNFSOptions = []string{"vers=4.1", "hard", "timeo=600", "retrans=2", "noresvport", "nosuid", "nodev"}

// maxOptionLen bounds a single option; real ones are a few dozen bytes.
const maxOptionLen = 256

// rule describes one accepted option key.
type rule struct {
	// family groups options that exclude each other.
	family string
	// value validates and normalises the value of a key=value option; nil
	// means the option is a bare flag.
	value func(string) (string, error)
}

// refused lists keys refused on purpose, with the reason shown to the user.
var refused = map[string]string{
	"nolock":       "locks would be local to this node, silently breaking locking between nodes",
	"local_lock":   "locks would be local to this node, silently breaking locking between nodes",
	"bg":           "a background mount reports success before the volume is mounted",
	"port":         "the NFS port is set by the driver from the volume context",
	"suid":         "a set-user-id program on a shared volume would run as its owner, root included, on every node that mounts it",
	"dev":          "a device file on a shared volume would open that device on every node that mounts it",
	"addr":         "the server address is set by the driver from the volume context",
	"udp":          "NFSv4 runs over TCP only",
	"mountproto":   "NFSv2/3 MOUNT protocol option; dots serves NFSv4 only",
	"mountport":    "NFSv2/3 MOUNT protocol option; dots serves NFSv4 only",
	"mountvers":    "NFSv2/3 MOUNT protocol option; dots serves NFSv4 only",
	"mounthost":    "NFSv2/3 MOUNT protocol option; dots serves NFSv4 only",
	"mountaddr":    "NFSv2/3 MOUNT protocol option; dots serves NFSv4 only",
	"minorversion": "deprecated; use vers=4.0, vers=4.1 or vers=4.2",
	"remount":      "mount operations are not per-volume options",
	"bind":         "mount operations are not per-volume options",
	"rbind":        "mount operations are not per-volume options",
	"move":         "mount operations are not per-volume options",
	"context":      "SELinux mount labels are not supported",
	"fscontext":    "SELinux mount labels are not supported",
	"defcontext":   "SELinux mount labels are not supported",
	"rootcontext":  "SELinux mount labels are not supported",
}

// nfsRules are the accepted keys. nfsvers is accepted as an alias of vers.
var nfsRules = map[string]rule{
	"vers":    {family: "vers", value: nfsVersion},
	"nfsvers": {family: "vers", value: nfsVersion},

	"hard":    {family: "recovery"},
	"soft":    {family: "recovery"},
	"softerr": {family: "recovery"},

	"timeo":    {family: "timeo", value: intIn(1, 36000)},
	"retrans":  {family: "retrans", value: intIn(0, 1000)},
	"retry":    {family: "retry", value: intIn(0, 10000)},
	"rsize":    {family: "rsize", value: intIn(1024, 1<<20)},
	"wsize":    {family: "wsize", value: intIn(1024, 1<<20)},
	"acregmin": {family: "acregmin", value: intIn(0, 86400)},
	"acregmax": {family: "acregmax", value: intIn(0, 86400)},
	"acdirmin": {family: "acdirmin", value: intIn(0, 86400)},
	"acdirmax": {family: "acdirmax", value: intIn(0, 86400)},
	"actimeo":  {family: "actimeo", value: intIn(0, 86400)},

	"nconnect":    {family: "nconnect", value: intIn(1, 16)},
	"max_connect": {family: "max_connect", value: intIn(1, 16)},

	"resvport":   {family: "resvport"},
	"noresvport": {family: "resvport"},

	"ac":           {family: "ac"},
	"noac":         {family: "ac"},
	"cto":          {family: "cto"},
	"nocto":        {family: "cto"},
	"sharecache":   {family: "sharecache"},
	"nosharecache": {family: "sharecache"},
	"fsc":          {family: "fsc"},
	"nofsc":        {family: "fsc"},
	"rdirplus":     {family: "rdirplus"},
	"nordirplus":   {family: "rdirplus"},
	"intr":         {family: "intr"},
	"nointr":       {family: "intr"},

	"trunkdiscovery":   {family: "trunkdiscovery"},
	"notrunkdiscovery": {family: "trunkdiscovery"},

	"lookupcache": {family: "lookupcache", value: oneOf("all", "none", "pos", "positive")},
	"proto":       {family: "proto", value: oneOf("tcp", "tcp6")},
	"sec":         {family: "sec", value: secSys},
	"clientaddr":  {family: "clientaddr", value: ipAddress},
	"lock":        {family: "lock"},
	"fg":          {family: "fg"},

	// Generic VFS flags.
	"ro":          {family: "rw"},
	"rw":          {family: "rw"},
	"noatime":     {family: "atime"},
	"relatime":    {family: "atime"},
	"strictatime": {family: "atime"},
	"diratime":    {family: "diratime"},
	"nodiratime":  {family: "diratime"},
	"nosuid":      {family: "suid"},
	"nodev":       {family: "dev"},
	"exec":        {family: "exec"},
	"noexec":      {family: "exec"},
	"sync":        {family: "sync"},
	"async":       {family: "sync"},
	"_netdev":     {family: "_netdev"},
}

// option is one parsed, validated mount option.
type option struct {
	key, value string
	hasValue   bool
	family     string
}

func (o option) String() string {
	if o.hasValue {
		return o.key + "=" + o.value
	}
	return o.key
}

// parseOption checks the syntax and the rules of one option.
func parseOption(raw string) (option, error) {
	if raw == "" {
		return option{}, fmt.Errorf("%w: empty option", ErrInvalidOption)
	}
	if len(raw) > maxOptionLen {
		return option{}, fmt.Errorf("%w: option longer than %d bytes", ErrInvalidOption, maxOptionLen)
	}
	for _, r := range raw {
		switch {
		case r == ',':
			return option{}, fmt.Errorf("%w: %q holds ',': give one option per mountOptions entry", ErrInvalidOption, raw)
		case r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\':
			return option{}, fmt.Errorf("%w: %q holds whitespace, a quote or a control character", ErrInvalidOption, raw)
		}
	}
	key, value, hasValue := strings.Cut(raw, "=")
	if key == "" {
		return option{}, fmt.Errorf("%w: %q has no name", ErrInvalidOption, raw)
	}
	if reason, bad := refused[key]; bad {
		return option{}, fmt.Errorf("%w: %q is refused: %s", ErrInvalidOption, raw, reason)
	}
	r, known := nfsRules[key]
	if !known {
		return option{}, fmt.Errorf("%w: %q is not a supported NFSv4 mount option", ErrInvalidOption, raw)
	}
	if key == "nfsvers" {
		key = "vers"
	}
	if r.value == nil {
		if hasValue {
			return option{}, fmt.Errorf("%w: %q takes no value", ErrInvalidOption, raw)
		}
		return option{key: key, family: r.family}, nil
	}
	if !hasValue || value == "" {
		return option{}, fmt.Errorf("%w: %q needs a value (%s=...)", ErrInvalidOption, raw, key)
	}
	norm, err := r.value(value)
	if err != nil {
		return option{}, fmt.Errorf("%w: %q: %v", ErrInvalidOption, raw, err)
	}
	return option{key: key, value: norm, hasValue: true, family: r.family}, nil
}

// parseUserOptions validates user options and keeps one per family, in the
// order given. Two different options of one family are a conflict.
func parseUserOptions(user []string) ([]option, error) {
	out := make([]option, 0, len(user))
	byFamily := make(map[string]option, len(user))
	for _, raw := range user {
		o, err := parseOption(raw)
		if err != nil {
			return nil, err
		}
		if prev, seen := byFamily[o.family]; seen {
			if prev.String() != o.String() {
				return nil, fmt.Errorf("%w: %q conflicts with %q", ErrInvalidOption, raw, prev.String())
			}
			continue
		}
		byFamily[o.family] = o
		out = append(out, o)
	}
	return out, nil
}

// NFSMountOptions returns the options of an nfs-mode mount: the defaults,
// each replaced by the user's option of the same family, then the user's
// other options in their order, then port=N when port is not zero.
func NFSMountOptions(user []string, port int) ([]string, error) {
	opts, err := parseUserOptions(user)
	if err != nil {
		return nil, err
	}
	byFamily := make(map[string]option, len(opts))
	for _, o := range opts {
		byFamily[o.family] = o
	}
	out := make([]string, 0, len(DefaultNFSOptions)+len(opts)+1)
	used := make(map[string]bool, len(DefaultNFSOptions))
	for _, raw := range DefaultNFSOptions {
		def, err := parseOption(raw)
		if err != nil {
			return nil, fmt.Errorf("default option %q: %w", raw, err)
		}
		if o, ok := byFamily[def.family]; ok {
			out = append(out, o.String())
		} else {
			out = append(out, def.String())
		}
		used[def.family] = true
	}
	for _, o := range opts {
		if !used[o.family] {
			out = append(out, o.String())
		}
	}
	if port != 0 {
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("%w: port %d out of range", ErrInvalidVolume, port)
		}
		out = append(out, "port="+strconv.Itoa(port))
	}
	return out, nil
}

// bindOptions validates user options with the nfs rules and returns the
// options of a local-bind mount, which can only honour read-only.
func bindOptions(user []string, readOnly bool) ([]string, error) {
	opts, err := parseUserOptions(user)
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		if o.key == "ro" {
			readOnly = true
		}
	}
	if readOnly {
		return []string{"bind", "nosuid", "nodev", "ro"}, nil
	}
	return []string{"bind", "nosuid", "nodev"}, nil
}

func nfsVersion(v string) (string, error) {
	switch v {
	case "4", "4.0", "4.1", "4.2":
		return v, nil
	}
	return "", fmt.Errorf("NFS version %s is not served: dots serves NFSv4 only (4, 4.0, 4.1, 4.2)", v)
}

func intIn(lo, hi int) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return "", fmt.Errorf("want an integer in [%d, %d]", lo, hi)
		}
		return strconv.Itoa(n), nil
	}
}

func oneOf(allowed ...string) func(string) (string, error) {
	return func(v string) (string, error) {
		for _, a := range allowed {
			if v == a {
				return v, nil
			}
		}
		return "", fmt.Errorf("want one of %s", strings.Join(allowed, ", "))
	}
}

func secSys(v string) (string, error) {
	if v != "sys" {
		return "", fmt.Errorf("dots exports use sec=sys only")
	}
	return v, nil
}

func ipAddress(v string) (string, error) {
	ip := net.ParseIP(v)
	if ip == nil {
		return "", fmt.Errorf("want an IP address")
	}
	return ip.String(), nil
}
