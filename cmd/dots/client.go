package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dots-csi/dots/pkg/capacity"
	"github.com/dots-csi/dots/pkg/client"
	"github.com/dots-csi/dots/pkg/local"
)

func clientCommands() []command {
	return []command{
		{"servers", "list the storage servers: pool state, size, used, free, volumes, replicas held, orphaned pools (read when asked)", explained("servers", cmdServers)},
		{"volume", "create, list, get, expand, clone, delete, promote volumes; put and cat files through NFS; mount, unmount, stats", explained("volume", cmdVolume)},
		{"snapshot", "create, list, delete snapshots; restore one into a new volume", explained("snapshot", cmdSnapshot)},
	}
}

// session is a parsed client invocation: its flags, positional arguments
// and a connected client.
type session struct {
	fs       *flag.FlagSet
	endpoint string
	http     string
	stateDir string
	output   string
	timeout  time.Duration
	args     []string
	// admin: the command talks to the controller's admin socket, found
	// in the local stack's state when --http does not name it.
	admin  bool
	client *client.Client
	print  client.Printer
}

func newSession(name, usage string) *session {
	s := &session{fs: flag.NewFlagSet("dots "+name, flag.ContinueOnError)}
	current = s
	s.fs.StringVar(&s.stateDir, "state-dir", envOr("DOTS_STATE_DIR", local.DefaultStateDir), "state directory of the local stack to talk to")
	s.fs.StringVar(&s.endpoint, "endpoint", os.Getenv("DOTS_ENDPOINT"), "CSI endpoint, unix:///PATH (default: the local stack's)")
	s.fs.StringVar(&s.http, "http", os.Getenv("DOTS_HTTP"), "the controller's admin socket, `unix:///PATH` of its --admin-socket, for servers, volume promote, server drain and server rebalance (default: the local stack's)")
	s.fs.StringVar(&s.output, "o", "table", "output format: table or json")
	s.fs.DurationVar(&s.timeout, "timeout", time.Minute, "how long to wait for an answer")
	s.fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: dots %s %s\n\nFlags:\n", name, usage)
		s.fs.PrintDefaults()
	}
	return s
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// parse reads flags wherever they stand among the arguments, checks the
// number of positional ones, and connects.
func (s *session) parse(args []string, want int) error {
	for {
		if err := s.fs.Parse(args); err != nil {
			return err
		}
		if s.fs.NArg() == 0 {
			break
		}
		s.args = append(s.args, s.fs.Arg(0))
		args = s.fs.Args()[1:]
	}
	if len(s.args) != want {
		s.fs.Usage()
		return fmt.Errorf("want %d argument(s), got %d", want, len(s.args))
	}
	f, err := client.ParseFormat(s.output)
	if err != nil {
		return err
	}
	s.print = client.Printer{W: os.Stdout, Format: f}
	if s.endpoint == "" || (s.http == "" && s.admin) {
		info, err := local.ReadInfo(s.stateDir)
		if err != nil {
			return err
		}
		if s.endpoint == "" {
			s.endpoint = info.Endpoint
		}
		if s.http == "" {
			s.http = info.Admin
		}
	}
	s.client, err = client.Dial(s.endpoint, s.http)
	return err
}

// mountPorts are the local stack's NFSv3 MOUNT ports, when talking to it.
func (s *session) mountPorts() client.MountPorts {
	info, err := local.ReadInfo(s.stateDir)
	if err != nil || info.Endpoint != s.endpoint {
		return nil
	}
	ports := client.MountPorts{}
	for _, srv := range info.Servers {
		ports[srv.Name] = srv.MountPort
	}
	return ports
}

func (s *session) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	if s.timeout == 0 {
		return context.WithCancel(parent)
	}
	return context.WithTimeout(parent, s.timeout)
}

// newAdminSession is a session of a command served by the controller's
// admin socket, waiting timeout by default (0: until it ends).
func newAdminSession(name, usage string, timeout time.Duration) *session {
	s := newSession(name, usage)
	s.admin = true
	s.timeout = timeout
	s.fs.Lookup("timeout").DefValue = timeout.String()
	return s
}

func size(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	return capacity.ParseSize(v)
}

func cmdServers(ctx context.Context, args []string) error {
	s := newSession("servers", "")
	s.admin = true
	if err := s.parse(args, 0); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	list, err := s.client.Servers(ctx)
	if err != nil {
		return err
	}
	orphans, err := s.client.OrphanedPools(ctx)
	if err != nil {
		return err
	}
	return s.print.Servers(client.WithOrphans(list, orphans))
}

func subcommand(ctx context.Context, group string, args []string, subs map[string]func(context.Context, []string) error) error {
	names := slices.Sorted(maps.Keys(subs))
	usage := fmt.Sprintf("usage: dots %s {%s} ... (dots %s VERB -h: its flags)", group, strings.Join(names, "|"), group)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Println(usage)
		return nil
	}
	if len(args) == 0 || subs[args[0]] == nil {
		return errors.New(usage)
	}
	return subs[args[0]](ctx, args[1:])
}
