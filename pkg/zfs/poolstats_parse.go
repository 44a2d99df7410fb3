package zfs

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// parseZpoolList reads the one line of `zpool list -H -o
// name,size,allocated,free[,fragmentation],health POOL`: exact bytes with
// -p (OpenZFS), rounded sizes such as "1016M" without (zfs-fuse). A pool
// zpool cannot open prints "-" for every figure.
func parseZpoolList(out, pool string, exact bool) (PoolStats, error) {
	line := strings.TrimRight(out, "\n")
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		return PoolStats{}, fmt.Errorf("zpool list %s: want one line, got %q", pool, out)
	}
	f := strings.Split(line, "\t")
	want := 5
	if exact {
		want = 6
	}
	if len(f) != want || f[0] != pool {
		return PoolStats{}, fmt.Errorf("zpool list %s: want %d tab-separated fields of pool %s, got %q", pool, want, pool, line)
	}
	st := PoolStats{Health: f[len(f)-1], SizesExact: exact, Fragmentation: -1}
	for i, dst := range []*int64{&st.Size, &st.Allocated, &st.Free} {
		n, err := parseZpoolSize(f[1+i], exact)
		if err != nil {
			return PoolStats{}, fmt.Errorf("zpool list %s: %w", pool, err)
		}
		*dst = n
	}
	if exact && f[4] != "-" {
		n, err := strconv.Atoi(strings.TrimSuffix(f[4], "%"))
		if err != nil || n < 0 {
			return PoolStats{}, fmt.Errorf("zpool list %s: fragmentation %q is not a percentage", pool, f[4])
		}
		st.Fragmentation = n
	}
	return st, nil
}

// parseZpoolSize reads one size field: bytes with -p; without it zfs's
// nicenum ("556K", "1016M", "62.0M", "1.50T", "0", "512B"), in powers of
// 1024. "-" (unknown) is 0.
func parseZpoolSize(s string, exact bool) (int64, error) {
	if s == "-" {
		return 0, nil
	}
	if exact {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("size %q is not a byte count", s)
		}
		return n, nil
	}
	return parseNiceSize(s)
}

// parseNiceSize reads zfs's human-readable sizes.
func parseNiceSize(s string) (int64, error) {
	num, shift := strings.TrimSuffix(s, "B"), 0
	if num == "" {
		return 0, fmt.Errorf("size %q is not a size", s)
	}
	if i := strings.IndexByte("KMGTPE", num[len(num)-1]); i >= 0 {
		num, shift = num[:len(num)-1], 10*(i+1)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q is not a size", s)
	}
	v *= math.Exp2(float64(shift))
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(math.Round(v)), nil
}

// zpoolStatus is what dots reads of `zpool status POOL`.
type zpoolStatus struct {
	state      string
	scan       Scan
	dataErrors int64
}

// The scan line of `zpool status`: "scan:" on OpenZFS (and ZoL, FreeBSD),
// "scrub:" on zfs-fuse and the Solaris ZFS it comes from. The dates are
// ctime(3)'s, in the zpool process's local time.
var (
	// zfs-fuse: "scrub completed after 0h0m with 29 errors on DATE",
	// "scrub stopped after ...", "resilver completed after ...".
	scanDoneOld = regexp.MustCompile(`^(scrub|resilver) (completed|stopped) after .* with (\d+) errors on (.+)$`)
	// zfs-fuse: "scrub in progress for 0h0m, 0.19% done, 0h0m to go".
	scanRunningOld = regexp.MustCompile(`^(scrub|resilver) in progress for `)
	// OpenZFS: "scrub repaired 0B in 00:00:01 with 0 errors on DATE",
	// "thorough scrub repaired ...", "resilvered 324G in 42h22m with 0
	// errors on DATE" (older: "repaired 0 in 0h28m", "in 0 days 00:14:33").
	scanDone = regexp.MustCompile(`^(?:thorough )?(scrub repaired|resilvered) .* with (\d+) errors on (.+)$`)
	// OpenZFS: "scrub canceled on DATE", "resilver canceled on DATE".
	scanCanceled = regexp.MustCompile(`^(?:thorough )?(scrub|resilver) canceled on (.+)$`)
	// OpenZFS: "scrub in progress since DATE", "scrub paused since DATE",
	// "resilver in progress since DATE".
	scanSince = regexp.MustCompile(`^(?:thorough )?(scrub|resilver) (in progress|paused) since (.+)$`)
	// "errors: 1 data errors, use '-v' for a list".
	dataErrorsRE = regexp.MustCompile(`^errors: (\d+) data errors`)
)

// parseZpoolStatus reads the state, the scan line and the data errors of
// one pool's `zpool status`. A scan line it does not know is an error: a
// scheduler that misread it could start scrubs forever, or never. A pool
// zpool cannot open has no scan line: its scan is ScanUnknown.
func parseZpoolStatus(out string, loc *time.Location) (zpoolStatus, error) {
	st := zpoolStatus{scan: Scan{State: ScanUnknown}}
	for _, raw := range strings.Split(out, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(line, "state:"):
			st.state = strings.TrimSpace(strings.TrimPrefix(line, "state:"))
		case strings.HasPrefix(line, "scan:"), strings.HasPrefix(line, "scrub:"):
			_, v, _ := strings.Cut(line, ":")
			scan, err := parseScanLine(strings.TrimSpace(v), loc)
			if err != nil {
				return st, err
			}
			st.scan = scan
		case strings.HasPrefix(line, "errors:"):
			if m := dataErrorsRE.FindStringSubmatch(line); m != nil {
				st.dataErrors, _ = strconv.ParseInt(m[1], 10, 64)
			}
		}
	}
	if st.state == "" {
		return st, fmt.Errorf("no state line in %q", out)
	}
	return st, nil
}

func parseScanLine(v string, loc *time.Location) (Scan, error) {
	if v == "none requested" {
		return Scan{State: ScanNone}, nil
	}
	date := func(s string) (time.Time, error) {
		t, err := time.ParseInLocation(time.ANSIC, strings.TrimSpace(s), loc)
		if err != nil {
			return time.Time{}, fmt.Errorf("scan line %q: date %q: %w", v, s, err)
		}
		return t, nil
	}
	if m := scanDoneOld.FindStringSubmatch(v); m != nil {
		s := Scan{Kind: ScanKind(m[1]), State: ScanFinished}
		if m[2] == "stopped" {
			s.State = ScanCanceled
		}
		s.Errors, _ = strconv.ParseInt(m[3], 10, 64)
		end, err := date(m[4])
		s.End = end
		return s, err
	}
	if m := scanRunningOld.FindStringSubmatch(v); m != nil {
		return Scan{Kind: ScanKind(m[1]), State: ScanRunning}, nil
	}
	if m := scanDone.FindStringSubmatch(v); m != nil {
		s := Scan{Kind: ScanScrub, State: ScanFinished}
		if m[1] == "resilvered" {
			s.Kind = ScanResilver
		}
		s.Errors, _ = strconv.ParseInt(m[2], 10, 64)
		end, err := date(m[3])
		s.End = end
		return s, err
	}
	if m := scanCanceled.FindStringSubmatch(v); m != nil {
		end, err := date(m[2])
		return Scan{Kind: ScanKind(m[1]), State: ScanCanceled, End: end}, err
	}
	if m := scanSince.FindStringSubmatch(v); m != nil {
		s := Scan{Kind: ScanKind(m[1]), State: ScanRunning}
		if m[2] == "paused" {
			// "scrub paused since PAUSE" is followed by "scrub started on
			// START" on the next line; the pause time will do.
			s.State = ScanPaused
		}
		start, err := date(m[3])
		s.Start = start
		return s, err
	}
	return Scan{}, fmt.Errorf("unknown scan line %q", v)
}
