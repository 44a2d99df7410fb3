//go:build tools

// Package tools pins the Kubernetes control-plane binaries the e2e test
// builds (see ../build-tools.sh). k8s.io/kubernetes replaces its staging
// modules with local directories, so go.mod maps each one to its published
// v0.x version instead.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
