package main

import (
	"context"

	"github.com/dots-csi/dots/pkg/driver"
	"github.com/dots-csi/dots/pkg/server"
)

func runServer(ctx context.Context, args []string) error {
	if len(args) > 0 && serverAdmin[args[0]] != nil {
		return serverAdmin[args[0]](ctx, args[1:])
	}
	var cfg server.Config
	fs := flags("server")
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return server.Run(ctx, cfg, nil)
}

func runController(ctx context.Context, args []string) error {
	var cfg driver.ControllerConfig
	fs := flags("controller")
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return driver.RunController(ctx, cfg, nil)
}

func runNode(ctx context.Context, args []string) error {
	var cfg driver.NodeConfig
	fs := flags("node")
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return driver.RunNode(ctx, cfg, nil)
}
