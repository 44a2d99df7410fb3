package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/dots-csi/dots/pkg/version"
)

// runVersion prints what this binary is: `dots version=V revision=R go=G
// platform=OS/ARCH`, one line of key=value pairs for people and scripts.
func runVersion(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("dots version", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("takes no arguments, got %q", fs.Args())
	}
	_, err := fmt.Fprintf(os.Stdout, "dots version=%s revision=%s go=%s platform=%s/%s\n",
		version.Version, version.Revision(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
