// Command dots is the one binary of dots: the storage server, the CSI
// controller and node plugin, the single-machine local stack, and a client
// for people. See `dots help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

func commands() []command {
	return append([]command{
		{"server", "run a storage server: one ZFS pool, its NFS server, and replicas to and from other servers (`dots server drain|rebalance|forget`: move volumes off one, even them out, declare one gone)", runServer},
		{"controller", "run the cluster-wide CSI controller", runController},
		{"node", "run the CSI node plugin", runNode},
		{"local", "run the whole system on this machine (development and demo)", runLocal},
		{"version", "print the version and source revision of this binary", runVersion},
	}, clientCommands()...)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: dots COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun `dots COMMAND -h` for a command's flags.\n")
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	if os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage(os.Stdout) // asked for: not an error
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == os.Args[1] {
			err := c.run(ctx, os.Args[2:])
			klog.Flush()
			if errors.Is(err, flag.ErrHelp) {
				return // -h: the flags were printed, as asked
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "dots %s: %v\n", c.name, err)
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "dots: unknown command %q\n\n", os.Args[1])
	usage(os.Stderr)
	os.Exit(2)
}

// flags returns a FlagSet for a daemon command, with klog's flags on it.
func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("dots "+name, flag.ContinueOnError)
	klog.InitFlags(fs)
	return fs
}
