// Package command runs zfs and zpool: every ZFS command dots issues goes
// through a Runner, argv style, with the caller's context and a deadline
// chosen by the kind of command. The host Runner puts each command in its
// own process group, kills the group when the deadline passes or the caller
// gives up, makes the kernel kill the command if dots dies first (so no zfs
// child outlives a killed server and changes the pool behind the next one),
// counts every command by subcommand and outcome, and reports commands that
// run far longer than they should (see Host.Healthy).
package command

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// The tools a Cmd runs.
const (
	ZFS   = "zfs"
	Zpool = "zpool"
)

// Cmd is one command.
type Cmd struct {
	Tool string   // ZFS or Zpool
	Args []string // the arguments after the tool, e.g. "get", "-Hp", ...
	// Stdin feeds the command (zfs recv); nil means no input.
	Stdin io.Reader
	// Stdout receives the command's output as it comes (zfs send); nil
	// means Run returns it.
	Stdout io.Writer
}

// Z returns the zfs command with args.
func Z(args ...string) Cmd { return Cmd{Tool: ZFS, Args: args} }

// Pool returns the zpool command with args.
func Pool(args ...string) Cmd { return Cmd{Tool: Zpool, Args: args} }

// Subcommand is the first argument ("get", "create", ...): what metrics and
// deadlines are keyed by.
func (c Cmd) Subcommand() string {
	if len(c.Args) == 0 {
		return ""
	}
	return c.Args[0]
}

func (c Cmd) String() string {
	return strings.Join(append([]string{c.Tool}, c.Args...), " ")
}

// Runner runs commands. Implementations must honour ctx: when it ends, the
// command is stopped and Run returns an error wrapping ctx.Err().
type Runner interface {
	Run(ctx context.Context, c Cmd) ([]byte, error)
}

// Error is a command that ran and failed.
type Error struct {
	Cmd    string // the command line, for messages
	Stderr string // what it printed on stderr
	Err    error  // its exit status
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, strings.TrimSpace(e.Stderr))
}

func (e *Error) Unwrap() error { return e.Err }
