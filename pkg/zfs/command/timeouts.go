package command

import (
	"errors"
	"flag"
	"time"
)

// Timeouts bound how long a command may run. Reading or setting properties
// is quick whatever the pool holds; creating, destroying, renaming,
// receiving and pool operations can take minutes on a large or busy pool.
type Timeouts struct {
	Short time.Duration // get, list, set, inherit, hold, release, version
	Long  time.Duration // everything else
	// StuckAfter is how long a command may run before Host.Healthy reports
	// it: the server is then not ready until it ends (at the latest at its
	// deadline, when it is killed).
	StuckAfter time.Duration
	// StreamIdle bounds a stream (a command with Stdin or Stdout: zfs
	// send, zfs recv) instead of Long: it is killed only after this long
	// without a byte moving (0: DefaultStreamIdle), as a full send of a
	// large volume takes as long as its data does. While bytes move it is
	// not stuck either; only its caller's context ends it.
	StreamIdle time.Duration
}

// DefaultStreamIdle is StreamIdle's default.
const DefaultStreamIdle = 2 * time.Minute

// DefaultTimeouts are the flags' defaults.
var DefaultTimeouts = Timeouts{Short: time.Minute, Long: 5 * time.Minute, StuckAfter: time.Minute, StreamIdle: DefaultStreamIdle}

// streamIdle is StreamIdle or its default.
func (t Timeouts) streamIdle() time.Duration {
	if t.StreamIdle <= 0 {
		return DefaultStreamIdle
	}
	return t.StreamIdle
}

var shortSubcommands = map[string]bool{
	"get": true, "list": true, "set": true, "inherit": true, "hold": true, "release": true,
	"holds": true, "version": true, "status": true, "iostat": true,
}

// For returns the deadline of c.
func (t Timeouts) For(c Cmd) time.Duration {
	if shortSubcommands[c.Subcommand()] {
		return t.Short
	}
	return t.Long
}

// AddFlags registers the flags that set t.
func (t *Timeouts) AddFlags(fs *flag.FlagSet) {
	*t = DefaultTimeouts
	fs.DurationVar(&t.Long, "zfs-timeout", t.Long, "deadline of a zfs or zpool command that changes the pool (create, destroy, rename, recv, import, ...); the command is killed after it")
	fs.DurationVar(&t.Short, "zfs-short-timeout", t.Short, "deadline of a zfs or zpool command that reads or sets properties")
	fs.DurationVar(&t.StuckAfter, "zfs-stuck-after", t.StuckAfter, "a zfs command running longer than this makes the server not ready until it ends (a stream: this long without a byte)")
	fs.DurationVar(&t.StreamIdle, "zfs-stream-idle-timeout", t.StreamIdle, "a zfs send or recv is killed after this long without a byte moving (it has no overall deadline: a full send takes as long as its data)")
}

// Validate checks that every duration is positive.
func (t Timeouts) Validate() error {
	if t.Short <= 0 || t.Long <= 0 || t.StuckAfter <= 0 || t.StreamIdle < 0 {
		return errors.New("--zfs-timeout, --zfs-short-timeout, --zfs-stuck-after and --zfs-stream-idle-timeout must be positive")
	}
	return nil
}
