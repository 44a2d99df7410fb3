#!/usr/bin/env bash
# Builds the Kubernetes tools that the chart tests and the e2e test need
# (etcd, kube-apiserver, kube-controller-manager, the CSI sidecars, helm) from
# the Go module proxy into a cache directory keyed by the pinned versions, and
# copies the snapshot CRDs beside them. Idempotent: a tool already in the cache
# is skipped, so a warm run takes well under a second.
#
# Usage: hack/k8s/build-tools.sh [TOOL...]   (default: all)
#   TOOL is one of: etcd kube-apiserver kube-controller-manager csi-provisioner
#   csi-snapshotter snapshot-controller csi-resizer helm crds
# Prints the cache directory (holding bin/ and crd/) on stdout; progress and
# durations go to stderr. DOTS_TOOLS_CACHE overrides ~/.cache/dots-tools.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

all=(helm crds etcd kube-apiserver kube-controller-manager csi-provisioner csi-snapshotter snapshot-controller csi-resizer)
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=("${all[@]}")

key=$(cat "$here/versions.sh" "$here"/etcd/go.{mod,sum} "$here"/kube/go.{mod,sum} | sha256sum | cut -c1-16)
root=${DOTS_TOOLS_CACHE:-$HOME/.cache/dots-tools}/$key
mkdir -p "$root/bin" "$root/crd"

work=$(mktemp -d "$root/.work.XXXXXX")
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
    kube-apiserver|kube-controller-manager)
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
    helm)
      mkdir -p "$work/gobin"
      GOBIN=$work/gobin nice -n 10 go install -trimpath -ldflags "$(helm_ldflags)" "$HELM_MODULE/cmd/helm@$HELM_VERSION"
      mv "$work/gobin/helm" "$2" ;;
    *)
      log "unknown tool $1 (want one of: ${all[*]})"; return 2 ;;
  esac
}

for t in "${tools[@]}"; do
  if [ "$t" = crds ]; then
    if ! ls "$root"/crd/*.yaml >/dev/null 2>&1; then
      dir=$(module_dir "$SNAPSHOTTER_CLIENT_MODULE" "$SNAPSHOTTER_VERSION")
      cp "$dir"/config/crd/snapshot.storage.k8s.io_*.yaml "$work/"
      mv "$work"/snapshot.storage.k8s.io_*.yaml "$root/crd/"
      log "crds: copied $(ls "$root/crd" | wc -l) snapshot CRDs"
    fi
    continue
  fi
  out=$root/bin/$t
  [ -x "$out" ] && continue
  # Concurrent callers (the chart tests and the e2e test) wait for each
  # other per tool instead of building it twice.
  exec 9>"$root/.lock-$t"
  flock 9
  if [ -x "$out" ]; then
    exec 9>&-
    continue
  fi
  start=$(date +%s)
  log "$t: building"
  # Build beside the cache and rename, so an interrupted build leaves nothing
  # that a later run would take for a finished binary.
  build "$t" "$work/$t.new"
  mv "$work/$t.new" "$out"
  log "$t: built in $(( $(date +%s) - start ))s"
  exec 9>&-
done

echo "$root"
