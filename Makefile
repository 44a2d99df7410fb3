# dots: see README.md. Every target that needs system packages installs them
# first (hack/deps.sh is idempotent).
GO        ?= go
BIN       := bin/dots
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/dots-csi/dots/pkg/version.Version=$(VERSION) -X github.com/dots-csi/dots/pkg/version.revision=$(REVISION)
GOTESTFLAGS ?=
# Pipelines fail when any part fails (go test | hack/figures.sh).
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: all build deps test test-unit test-integration test-faults test-failover test-replicas test-replicas-short verify lint bench bench-short bench-go demo e2e k8s-tools clean image image-push test-image

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/dots

deps:
	@hack/deps.sh

# Unit tests: the logic, with fakes where a test needs a host; no root, no
# zfs-fuse, ganesha or libnfs; with the race detector. Minutes at most.
test-unit:
	$(GO) test -race -count=1 -timeout 10m $(GOTESTFLAGS) ./...

# The whole suite: unit tests, then everything against the real thing
# (integration tests on zfs-fuse/ganesha/libnfs, csi-sanity, fault
# injection, the local stack end to end), the Kubernetes end-to-end test,
# the demo, and the image (built, then run from the inside: about 2 minutes),
# and the benchmark's -short mode (fails when a target it measures is missed).
test: deps verify build test-unit test-integration
	$(MAKE) --no-print-directory test-replicas-short
	$(MAKE) --no-print-directory bench-short
	$(MAKE) --no-print-directory e2e
	$(MAKE) --no-print-directory demo
	$(MAKE) --no-print-directory test-image

# Integration tests: the tests behind the `integration` build tag, which
# start zfs-fuse pools, NFS-Ganesha and mounts (as root). Figures the tests
# measure are printed as `name: key=value ...` lines. The benchmark
# (test/bench) runs in bench and bench-short, not here.
test-integration: deps build
	$(GO) test -tags integration -count=1 -timeout 25m -v $(GOTESTFLAGS) $$($(GO) list ./... | grep -v -e '/test/bench$$' -e '/test/replicas$$') | hack/figures.sh bin/test-integration.log

# Fault injection on real servers: hung and killed zfs commands, servers
# that stop; prints one `faults: ...` line per scenario.
test-faults: deps build
	$(GO) test -tags integration -count=1 -timeout 15m -v $(GOTESTFLAGS) ./test/faults/ | hack/figures.sh bin/test-faults.log

# A storage server moved between simulated nodes (network namespaces) with
# its pool and address, crashed, and restarted in place, under a client
# writing every 100 ms: one `failover: CASE first_write_s=... lost=0 ...`
# line per case, each case three times. `make test` runs it once (it is in
# test-integration).
test-failover: deps build
	DOTS_FAILOVER_FULL=1 $(GO) test -tags integration -count=1 -timeout 20m -v $(GOTESTFLAGS) ./test/failover/ | hack/figures.sh bin/test-failover.log

# Replicas on real servers (`dots server` processes, zfs-fuse pools,
# ganesha, libnfs): replication with checksums and its lag, promotion after
# a lost pool (RPO, RTO), split brain, an interrupted stream. Prints
# `replication: ...` and `promotion: ...` lines. `make test` runs the short
# mode (1 s interval, shorter windows: about 2 minutes).
test-replicas: deps build
	$(GO) test -tags integration -count=1 -timeout 20m -v $(GOTESTFLAGS) ./test/replicas/ | hack/figures.sh bin/test-replicas.log

test-replicas-short: deps build
	$(GO) test -tags integration -count=1 -short -timeout 10m -v $(GOTESTFLAGS) ./test/replicas/ | hack/figures.sh bin/test-replicas-short.log

# Kubernetes tools (etcd, apiserver, controller-manager, scheduler, CSI
# sidecars, helm) built once from the Go module proxy into
# ~/.cache/dots-tools; later runs take a fraction of a second. A cold build
# takes 20-35 minutes.
k8s-tools:
	hack/k8s/build-tools.sh >/dev/null

# The user's path on a real control plane: StorageClass, PVC, snapshot,
# restore, resize, StatefulSet, reclaim policies, node publish; and the
# control plane's failover of a storage server whose node dies.
e2e: deps build k8s-tools
	cd test/e2e && $(GO) test -count=1 -timeout 30m -v ./...

verify: lint
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) vet -tags image ./test/image/
	cd test/e2e && $(GO) vet ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The benchmark (test/bench, see README "Performance"): every figure with
# dots' value, a baseline measured in the same run on the same pool, their
# ratio and spread over repetitions, and the issue's target; a table at the
# end and bench/results.json (DOTS_BENCH_OUT). Misses are reported, not
# fatal. About 15 minutes. Then the packages' own Go benchmarks (bench-go).
bench: deps build
	mkdir -p bin
	$(GO) test -tags integration -count=1 -timeout 90m $(GOTESTFLAGS) ./test/bench/ | tee bin/bench.log
	$(MAKE) --no-print-directory bench-go

# The benchmark's -short mode: smaller sizes, fewer repetitions, under 2
# minutes; a miss of a target it measures fails it (README "Performance").
bench-short: deps build
	mkdir -p bin
	$(GO) test -tags integration -count=1 -short -timeout 10m -v $(GOTESTFLAGS) ./test/bench/ | hack/figures.sh bin/bench-short.log

# The packages' Go benchmarks, each with its baseline in the same run
# (e.g. pkg/zfs copy vs clone, pkg/nfs export readiness).
bench-go: deps
	$(GO) test -tags integration -run '^$$' -bench . -benchtime 3x $$($(GO) list ./... | grep -v '/test/bench$$')

demo: deps build
	hack/demo.sh

# The one dots image, without a Docker daemon (as root): Debian packages
# (deploy/image/packages.txt) with mmdebstrap, the static binary, umoci.
# Writes the OCI layout bin/dots-image, bin/dots-image.tar (for docker/podman
# load) and bin/dots-image.dpkg.txt. About a minute; see hack/image/build.sh.
# IMAGE_ARCHES="amd64 arm64" builds bin/dots-image-ARCH for each other
# architecture too (under qemu: about 5 minutes for arm64).
HOST_ARCH    := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
IMAGE_ARCHES ?= $(HOST_ARCH)
image_layouts = $(foreach a,$(IMAGE_ARCHES),bin/dots-image$(if $(filter $(HOST_ARCH),$(a)),,-$(a)))
image:
	@set -e; for a in $(IMAGE_ARCHES); do \
	  out=bin/dots-image; [ "$$a" = "$(HOST_ARCH)" ] || out=bin/dots-image-$$a; \
	  IMAGE_ARCH=$$a VERSION='$(VERSION)' REVISION='$(REVISION)' LDFLAGS='$(LDFLAGS)' hack/image/build.sh $$out; \
	done

# Pushes the image with crane (built once from the Go module proxy):
# make image-push IMAGE=registry.example.com/dots/dots:TAG; with several
# IMAGE_ARCHES, one image per architecture and an index of them under TAG.
image-push:
	hack/image/push.sh '$(IMAGE)' $(image_layouts)

# Builds the image and checks it from the inside (test/image): its commands,
# the chart's flags, ganesha serving an export, a push to a loopback
# registry, and a second build for reproducibility.
test-image: deps image
	@set -e; for l in $(image_layouts); do \
	  DOTS_IMAGE=$$l $(GO) test -tags image -count=1 -timeout 30m -v $(GOTESTFLAGS) ./test/image/ | hack/figures.sh bin/test-image.log; \
	done

clean:
	rm -rf bin
