//go:build tools

// Package tools pins etcd for the e2e test (see ../build-tools.sh). etcd's
// own go.mod uses replace directives, so `go install` refuses it; depending
// on its server module from here builds the same binary.
package tools

import _ "go.etcd.io/etcd/server/v3"
