package mounter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// mountWaitDelay is how long a killed mount's output pipes may stay open
// (a helper that escaped the process group) before Wait gives up on them.
const mountWaitDelay = 2 * time.Second

// RunMountCommand runs a mount command (argv, no shell) until it exits or
// ctx ends. mount(8) forks a helper (mount.nfs) that does the mounting, so
// the command runs in its own process group and the whole group is killed
// when ctx ends: an NFS mount's RPC waits are killable, so the attempt
// really ends instead of mounting later behind the caller's back.
func RunMountCommand(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = mountWaitDelay
	err := cmd.Run()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(out.String())
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s %s: %w (killed: %v) %s", name, strings.Join(args, " "), ctxErr, err, msg)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, msg)
	}
	return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
}
