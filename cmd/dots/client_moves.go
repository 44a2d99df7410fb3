package main

import (
	"context"
	"fmt"
	"time"

	"github.com/dots-csi/dots/pkg/api"
)

// How long the commands that move volumes wait by default: a promotion
// hands over one volume's last writes; a drain or rebalance moves many
// volumes, each at least one full send to a new server: no deadline.
const (
	promoteTimeout = 10 * time.Minute
	movesTimeout   = 0
)

func volumePromote(ctx context.Context, args []string) error {
	s := newAdminSession("volume promote", "ID [--to SERVER]\n\n"+
		"Makes another copy of a replicated volume its primary and raises its generation. If the primary\n"+
		"answers, it first hands over its last writes to every replica (nothing lost); if not, writes after\n"+
		"the last completed replication are lost (at most one replicationInterval plus the stream), and when\n"+
		"the old primary comes back it never serves again: it becomes a replica, its divergent writes kept\n"+
		"in POOL/dots/diverged/... Pods using the volume are restarted, or an Event on their claim says they\n"+
		"must be (the controller's --restart-pods-on-promotion). Without --to, the replica holding the\n"+
		"newest state is promoted. Through the controller's admin socket (--http); in Kubernetes:\n"+
		"kubectl exec -n NAMESPACE deploy/dots-controller -c dots -- dots volume promote ID", promoteTimeout)
	to := s.fs.String("to", "", "server whose replica becomes the primary (default: the replica with the newest state)")
	if err := s.parse(args, 1); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.client.Promote(ctx, s.args[0], *to)
	if err != nil {
		return err
	}
	return s.print.Promoted(res)
}

func cmdServerDrain(ctx context.Context, args []string) error {
	s := newAdminSession("server drain", "NAME\n\n"+
		"Moves every volume off storage server NAME, one at a time: each primary there gets a replica on\n"+
		"another server if it has none, is synced, stops serving (its exports paused for the final\n"+
		"increment), and the replica is promoted; each replica held there is replaced by one elsewhere.\n"+
		"The server is then empty: the StatefulSet may scale below it. Prints each move as it happens\n"+
		"(-o json: one JSON object per line). Running pods of a moved volume are restarted or told to\n"+
		"(see `dots volume promote -h`). A failed volume is reported and the rest go on; run it again.", movesTimeout)
	if err := s.parse(args, 1); err != nil {
		return err
	}
	if err := api.ValidateServerName(s.args[0]); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	last, err := s.client.Drain(ctx, s.args[0], s.print.Progress)
	return movesResult(last, err)
}

func cmdServerRebalance(ctx context.Context, args []string) error {
	s := newAdminSession("server rebalance", "\n\n"+
		fmt.Sprintf("Moves volumes from the fullest storage servers to the emptiest until every server's used space is\n"+
			"within %.0f %% of the mean (or no volume fits elsewhere), as `dots server drain` moves them. Prints each\n"+
			"move as it happens (-o json: one JSON object per line).", api.RebalanceTolerance*100), movesTimeout)
	if err := s.parse(args, 0); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	last, err := s.client.Rebalance(ctx, s.print.Progress)
	return movesResult(last, err)
}

// movesResult makes a drain or rebalance that left volumes behind fail.
func movesResult(last api.MoveEvent, err error) error {
	switch {
	case err != nil:
		return err
	case last.Error != "":
		return fmt.Errorf("stopped after %d of %d volume(s): %s", last.Done+last.Failed, last.Total, last.Error)
	case last.Failed > 0:
		return fmt.Errorf("%d of %d volume(s) did not move (see above); run it again", last.Failed, last.Total)
	}
	return nil
}
