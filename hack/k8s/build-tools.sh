#!/usr/bin/env bash
# Builds the Kubernetes tools that the chart tests and the e2e test need
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the CSI
# sidecars, helm) from the Go module proxy, and copies the snapshot CRDs beside
# them. Idempotent: a tool already in the cache is skipped, so a warm run takes
# well under a second.
#
# Each tool is stored under a key made of its own inputs (its version, and for
# etcd and Kubernetes their go.mod/go.sum), so adding a tool or bumping one
# version rebuilds only what changed. The directory printed is a view keyed by
# all versions, holding bin/ (links into the store) and crd/.
#
# Usage: hack/k8s/build-tools.sh [TOOL...]   (default: all)
#   TOOL is one of: etcd kube-apiserver kube-controller-manager kube-scheduler
#   csi-provisioner csi-snapshotter snapshot-controller csi-resizer
#   csi-attacher helm crds, or crane (built only when named: it pushes
#   the image, no test of the chart or e2e needs it)
# Prints the view directory on stdout; progress and durations go to stderr.
# DOTS_TOOLS_CACHE overrides ~/.cache/dots-tools.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

all=(helm crds etcd kube-apiserver kube-controller-manager kube-scheduler csi-provisioner csi-snapshotter snapshot-controller csi-resizer csi-attacher)
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=("${all[@]}")

cache=${DOTS_TOOLS_CACHE:-$HOME/.cache/dots-tools}
key=$(cat "$here/versions.sh" "$here"/etcd/go.{mod,sum} "$here"/kube/go.{mod,sum} | sha256sum | cut -c1-16)
root=$cache/$key
mkdir -p "$root/bin" "$root/crd" "$cache/store"

# tool_key TOOL: a hash of exactly the inputs that make TOOL's binary.
tool_key() {
  local inputs="$1 $TOOLS_REVISION"
  case $1 in
    etcd) inputs+=" $ETCD_VERSION $(cat "$here"/etcd/go.{mod,sum})" ;;
    kube-*) inputs+=" $KUBE_VERSION $(cat "$here"/kube/go.{mod,sum})" ;;
    csi-provisioner) inputs+=" $PROVISIONER_MODULE $PROVISIONER_VERSION" ;;
    csi-snapshotter|snapshot-controller|crds) inputs+=" $SNAPSHOTTER_MODULE $SNAPSHOTTER_VERSION" ;;
    csi-resizer) inputs+=" $RESIZER_MODULE $RESIZER_VERSION" ;;
    csi-attacher) inputs+=" $ATTACHER_MODULE $ATTACHER_VERSION" ;;
    helm) inputs+=" $HELM_MODULE $HELM_VERSION" ;;
    crane) inputs+=" $CRANE_MODULE $CRANE_VERSION" ;;
  esac
  echo "$inputs" | sha256sum | cut -c1-16
}

work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

log() { echo "build-tools: $*" >&2; }

# Two cores are shared with other builds: stay polite.
gobuild() { nice -n 10 go build -trimpath -buildvcs=false "$@"; }

# module_dir MODULE VERSION prints a writable copy of the module's source, so
# its own go.mod, go.sum, vendor directory and replace directives apply.
module_dir() {
  local src dst
  src=$(cd "$work" && go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$src" ] || { log "cannot download $1@$2"; return 1; }
  dst=$work/$(echo "$1@$2" | tr '/' '_')
  if [ ! -d "$dst" ]; then
    cp -r "$src" "$dst"
    chmod -R u+w "$dst"
  fi
  echo "$dst"
}

snapshotter_dir() {
  local dir client
  dir=$(module_dir "$SNAPSHOTTER_MODULE" "$SNAPSHOTTER_VERSION")
  if [ ! -f "$dir/client/go.mod" ]; then
    # The snapshotter's go.mod replaces its client module with ./client.
    client=$(module_dir "$SNAPSHOTTER_CLIENT_MODULE" "$SNAPSHOTTER_VERSION")
    rm -rf "$dir/client"
    cp -r "$client" "$dir/client"
  fi
  echo "$dir"
}

kube_ldflags() {
  local v=${KUBE_VERSION#v} pkg=k8s.io/component-base/version
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  echo "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor" \
    "-X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
}

# helm_ldflags stamps helm's version and the Kubernetes version it assumes
# for `helm template` and `helm lint` (by default v1.20, too old for
# kubeVersion checks), as helm's own Makefile does: client-go 0.N is 1.N.
helm_ldflags() {
  local gomod minor
  gomod=$(cd "$work" && go mod download -json "$HELM_MODULE@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  minor=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -1)
  [ -n "$minor" ] || { log "cannot find helm's client-go version"; return 1; }
  local v=helm.sh/helm/v3/internal/version
  echo "-s -w -X $v.version=$HELM_VERSION -X $v.gitTreeState=clean" \
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}

# build TOOL OUT: writes the binary to OUT.
build() {
  local dir
  case $1 in
    etcd)
      (cd "$here/etcd" && gobuild -ldflags "-s -w" -o "$2" go.etcd.io/etcd/server/v3) ;;
    kube-apiserver|kube-controller-manager|kube-scheduler)
      (cd "$here/kube" && gobuild -ldflags "$(kube_ldflags)" -o "$2" "k8s.io/kubernetes/cmd/$1") ;;
    csi-provisioner)
      dir=$(module_dir "$PROVISIONER_MODULE" "$PROVISIONER_VERSION")
      (cd "$dir" && gobuild -ldflags "-s -w -X main.version=$PROVISIONER_VERSION" -o "$2" ./cmd/csi-provisioner) ;;
    csi-snapshotter|snapshot-controller)
      dir=$(snapshotter_dir)
      (cd "$dir" && gobuild -ldflags "-s -w -X main.version=$SNAPSHOTTER_VERSION" -o "$2" "./cmd/$1") ;;
    csi-resizer)
      dir=$(module_dir "$RESIZER_MODULE" "$RESIZER_VERSION")
      (cd "$dir" && gobuild -ldflags "-s -w -X main.version=$RESIZER_VERSION" -o "$2" ./cmd/csi-resizer) ;;
    csi-attacher)
      dir=$(module_dir "$ATTACHER_MODULE" "$ATTACHER_VERSION")
      (cd "$dir" && gobuild -ldflags "-s -w -X main.version=$ATTACHER_VERSION" -o "$2" ./cmd/csi-attacher) ;;
    helm)
      mkdir -p "$work/gobin"
      GOBIN=$work/gobin nice -n 10 go install -trimpath -ldflags "$(helm_ldflags)" "$HELM_MODULE/cmd/helm@$HELM_VERSION"
      mv "$work/gobin/helm" "$2" ;;
    crane)
      mkdir -p "$work/gobin"
      GOBIN=$work/gobin nice -n 10 go install -trimpath -ldflags "-s -w" "$CRANE_MODULE/cmd/crane@$CRANE_VERSION"
      mv "$work/gobin/crane" "$2" ;;
    *)
      log "unknown tool $1 (want one of: ${all[*]} crane)"; return 2 ;;
  esac
}

for t in "${tools[@]}"; do
  if [ "$t" = crds ]; then
    crd=$cache/store/crds-$(tool_key crds)
    if [ ! -d "$crd" ]; then
      dir=$(module_dir "$SNAPSHOTTER_CLIENT_MODULE" "$SNAPSHOTTER_VERSION")
      mkdir -p "$work/crds"
      cp "$dir"/config/crd/*.storage.k8s.io_*.yaml "$work/crds/"
      mv "$work/crds" "$crd"
      log "crds: copied $(ls "$crd" | wc -l) snapshot CRDs"
    fi
    # crd/ holds the v1 snapshot CRDs; crd/group/ the group snapshot ones, which
    # only tests that turn group snapshots on install.
    mkdir -p "$root/crd/group"
    for f in "$crd"/*.storage.k8s.io_*.yaml; do
      case $(basename "$f") in
        groupsnapshot.*) ln -sfn "$f" "$root/crd/group/$(basename "$f")" ;;
        *) ln -sfn "$f" "$root/crd/$(basename "$f")" ;;
      esac
    done
    continue
  fi
  out=$cache/store/$t-$(tool_key "$t")
  if [ ! -x "$out" ]; then
    # Concurrent callers (the chart tests and the e2e test) wait for each
    # other per tool instead of building it twice.
    exec 9>"$cache/store/.lock-$t"
    flock 9
    if [ ! -x "$out" ]; then
      start=$(date +%s)
      log "$t: building"
      # Build beside the cache and rename, so an interrupted build leaves
      # nothing that a later run would take for a finished binary.
      build "$t" "$work/$t.new"
      mv "$work/$t.new" "$out"
      log "$t: built in $(( $(date +%s) - start ))s"
    fi
    exec 9>&-
  fi
  ln -sfn "$out" "$root/bin/$t"
done

echo "$root"
