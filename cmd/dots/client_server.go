package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/local"
	"github.com/dots-csi/dots/pkg/placements"
)

// serverAdmin are the `dots server VERB` commands; `dots server` with flags
// runs a storage server.
var serverAdmin = map[string]func(context.Context, []string) error{
	"forget":    cmdServerForget,
	"drain":     explained("servers", cmdServerDrain),
	"rebalance": explained("servers", cmdServerRebalance),
}

// cmdServerForget declares a storage server gone for good: the controller
// then treats its volumes and snapshots as deleted (their data went with
// the server's pool), instead of answering Unavailable until it is back.
func cmdServerForget(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dots server forget", flag.ContinueOnError)
	stateDir := fs.String("state-dir", envOr("DOTS_STATE_DIR", local.DefaultStateDir), "state directory of the local stack (its placements are there)")
	store := fs.String("placements", "", "the controller's placements store (default: the local stack's, else kubernetes, as in the controller pod)")
	yes := fs.Bool("yes", false, "confirm: the server's pool is lost for good")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: dots server forget NAME --yes\n\n"+
			"Declares storage server NAME gone for good. Until then, deletes of its volumes and snapshots answer\n"+
			"Unavailable (the server may come back, and a delete reported done would leak its data). After it,\n"+
			"they succeed, its names may be created elsewhere, and nothing of it is recoverable through dots.\n"+
			"In Kubernetes: kubectl exec -n NAMESPACE deploy/dots-controller -c dots -- dots server forget NAME --yes\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var name string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		if name != "" {
			fs.Usage()
			return errors.New("want one server name")
		}
		name, args = fs.Arg(0), fs.Args()[1:]
	}
	if name == "" {
		fs.Usage()
		return errors.New("want a server name")
	}
	if err := api.ValidateServerName(name); err != nil {
		return err
	}
	if !*yes {
		fs.Usage()
		return fmt.Errorf("not forgetting %s without --yes", name)
	}
	spec := *store
	if spec == "" {
		spec = "kubernetes"
		if _, err := local.ReadInfo(*stateDir); err == nil {
			spec = "dir:" + filepath.Join(*stateDir, "placements")
		}
	}
	s, err := placements.Open(spec)
	if err != nil {
		return err
	}
	if err := s.Forget(ctx, name); err != nil {
		return err
	}
	fmt.Printf("forgot storage server %s: its volumes and snapshots now count as deleted\n", name)
	return nil
}
