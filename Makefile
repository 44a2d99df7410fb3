# dots: see README.md. Every target that needs system packages installs them
# first (hack/deps.sh is idempotent).
GO        ?= go
BIN       := bin/dots
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/dots-csi/dots/pkg/version.Version=$(VERSION)
GOTESTFLAGS ?=

.PHONY: all build deps test verify lint bench demo e2e k8s-tools clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/dots

deps:
	@hack/deps.sh

# The whole suite: unit, integration against real zfs-fuse/ganesha/libnfs,
# csi-sanity, the local stack end to end, the Kubernetes end-to-end test, and
# the demo.
test: deps verify build
	$(GO) test -count=1 -timeout 25m $(GOTESTFLAGS) ./...
	$(MAKE) --no-print-directory e2e
	$(MAKE) --no-print-directory demo

# Kubernetes tools (etcd, apiserver, controller-manager, CSI sidecars, helm)
# built once from the Go module proxy into ~/.cache/dots-tools; later runs
# take a fraction of a second. A cold build takes 20-35 minutes.
k8s-tools:
	hack/k8s/build-tools.sh >/dev/null

# The user's path on a real control plane: StorageClass, PVC, snapshot,
# restore, resize, StatefulSet, reclaim policies, node publish.
e2e: deps build k8s-tools
	cd test/e2e && $(GO) test -count=1 -timeout 30m -v ./...

verify: lint
	$(GO) vet ./...
	cd test/e2e && $(GO) vet ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks report ratios against a baseline measured in the same run
# (e.g. copy/restore: copying a volume's data vs restoring it from a snapshot).
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

demo: deps build
	hack/demo.sh

clean:
	rm -rf bin
