package main

import (
	"context"
	"fmt"

	"github.com/dots-csi/dots/pkg/local"
)

func runLocal(ctx context.Context, args []string) error {
	var cfg local.Config
	fs := flags("local")
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return local.Run(ctx, cfg, func(info local.Info) {
		// Scripts wait for this line; keep its shape.
		fmt.Printf("ready endpoint=%s metrics=%s/metrics servers=%d state-dir=%s admin=%s\n", info.Endpoint, info.HTTP, len(info.Servers), cfg.StateDir, info.Admin)
	})
}
