#!/usr/bin/env bash
# Builds the one dots image without a Docker daemon, as root: a Debian 12
# root file system from the packages in deploy/image/packages.txt (mmdebstrap),
# the static dots binary, and an OCI image of the two (umoci).
#
# Usage: hack/image/build.sh [OUT]          (default: bin/dots-image)
# Writes OUT/ (an OCI image layout tagged VERSION), OUT.tar (the same layout
# as one file, with a manifest.json so that `docker load` and `podman load`
# take it too) and OUT.dpkg.txt (every package and version in the image).
# Prints one `image-build: ...` line with the manifest digest and the time.
#
# Layers: the Debian root file system, then /usr/local/bin/dots. The first
# changes only when the package list, this script or the Debian mirror does,
# so pulling a new dots version fetches only the second.
#
# Reproducible: the same commit, the same mirror content and the same tools
# give the same layer digests. Times inside the image are SOURCE_DATE_EPOCH:
# the commit time of the last change to the image's inputs for the Debian
# layer, the commit time of HEAD for the dots layer and the config.
#
# Environment: VERSION, REVISION, LDFLAGS (the Makefile passes its own; the
# defaults are the same), IMAGE_ARCH (amd64 or arm64, default this machine's;
# another than the machine's runs the packages' scripts under qemu-user-static,
# which it installs and registers with binfmt_misc),
# IMAGE_NAME (the name in OUT.tar's manifest.json, default dots-csi/dots),
# DEBIAN_SOURCES (apt source lines, one a line, e.g. of a snapshot of the
# archive to pin the packages; default mmdebstrap's for bookworm: the
# release, its updates and its security updates), DOTS_IMAGE_CACHE (the .deb
# files of the last build, reused by the next; default ~/.cache/dots-image),
# DOTS_IMAGE_KEEP_WORK=1 (keep the work directory, for debugging).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

log() { echo "image-build: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap --mode=root, chroot, device files)"

# Mounts that mmdebstrap makes (/proc, /sys, /dev in the root being built)
# stay in a mount namespace of our own, so a build that is killed leaves none
# behind on the machine.
if [ -z "${DOTS_IMAGE_UNSHARED:-}" ]; then
  DOTS_IMAGE_UNSHARED=1 exec unshare --mount --propagation private -- "$here/build.sh" "$@"
fi

out=${1:-bin/dots-image}
case $out in /*) ;; *) out=$repo/$out ;; esac
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
LDFLAGS=${LDFLAGS:--X github.com/dots-csi/dots/pkg/version.Version=$VERSION -X github.com/dots-csi/dots/pkg/version.revision=$REVISION}
host_arch=$(dpkg --print-architecture)
ARCH=${IMAGE_ARCH:-$host_arch}
IMAGE_NAME=${IMAGE_NAME:-dots-csi/dots}
SOURCE_URL=https://github.com/dots-csi/dots
SUITE=bookworm
ENTRYPOINT=/usr/local/bin/dots
# An OCI tag: letters, digits, '_', '.', '-'.
tag=$(printf '%s' "$VERSION" | tr -c 'A-Za-z0-9_.-' '_')

case $ARCH in
  amd64 | arm64) goarch=$ARCH ;;
  *) die "IMAGE_ARCH=$ARCH: only amd64 and arm64 are built" ;;
esac

# The inputs of the Debian layer, whose last commit time is its epoch.
base_inputs=(deploy/image hack/image/build.sh hack/image/customize.sh)
head_epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || true)}
[ -n "$head_epoch" ] || die "not a git checkout: set SOURCE_DATE_EPOCH"
base_epoch=$(git log -1 --format=%ct -- "${base_inputs[@]}" 2>/dev/null || true)
base_epoch=${base_epoch:-$head_epoch}
created=$(date -u -d "@$head_epoch" +%Y-%m-%dT%H:%M:%SZ)

sources=()
[ -z "${DEBIAN_SOURCES:-}" ] || mapfile -t sources < <(printf '%s\n' "$DEBIAN_SOURCES" | sed '/^[[:space:]]*$/d')
mapfile -t packages < <(sed -e 's/#.*//' deploy/image/packages.txt | tr -s ' \t' '\n' | sed '/^$/d')
[ ${#packages[@]} -gt 0 ] || die "deploy/image/packages.txt lists no package"

"$repo/hack/deps.sh" mmdebstrap umoci jq
if [ "$ARCH" != "$host_arch" ]; then
  # The packages' maintainer scripts run under qemu, through binfmt_misc.
  "$repo/hack/deps.sh" qemu-user-static binfmt-support arch-test
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    log "mounting binfmt_misc to run $ARCH programs under qemu"
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  case $ARCH in arm64) qemu=qemu-aarch64 ;; *) qemu=qemu-x86_64 ;; esac
  arch-test "$ARCH" >/dev/null 2>&1 || update-binfmts --enable "$qemu" >/dev/null
  arch-test "$ARCH" >/dev/null || die "this machine cannot run $ARCH programs (qemu-user-static, binfmt_misc)"
fi

start=$(date +%s)
cache=${DOTS_IMAGE_CACHE:-$HOME/.cache/dots-image}
mkdir -p "$cache/debs-$ARCH" "$(dirname "$out")"
# Builds sharing the cache take turns.
exec 9>"$cache/.lock"
flock 9

work=$(mktemp -d "${TMPDIR:-/tmp}/dots-image.XXXXXX")
cleanup() {
  # Never follow a mount out of the work directory (the namespace drops
  # them anyway).
  [ -n "${DOTS_IMAGE_KEEP_WORK:-}" ] && { log "kept $work"; return; }
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir -p "$work/tmp" "$work/dots/usr/local/bin" "$work/debs"

log "dots binary: version $VERSION, linux/$goarch"
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath -buildvcs=false \
  -ldflags "-s -w $LDFLAGS" -o "$work/dots$ENTRYPOINT" ./cmd/dots
chmod 0755 "$work/dots$ENTRYPOINT"

log "Debian $SUITE ($ARCH): ${packages[*]}"
# The customize hooks (mmdebstrap runs them with the new root as $1) write
# the package list and save the .deb files here.
export DOTS_IMAGE_DPKG_LIST=$work/dpkg.txt DOTS_IMAGE_DEBS_OUT=$work/debs
export DOTS_IMAGE_DEBS_IN=$cache/debs-$ARCH
# The merged-usr hooks make /bin, /lib and /sbin links into /usr, as
# debootstrap does, and install usr-is-merged: without them apt picks usrmerge
# for init-system-helpers, which brings perl (42 MB) along.
# The .deb files of the last build go into the new root's apt cache before
# anything is downloaded (apt fetches only what changed), and this build's
# come back out. mmdebstrap empties the cache before it packs the root.
# customize.sh holds what deploy/Dockerfile does too; the hooks after it,
# what only this build needs: the build machine's name and resolver out
# (the runtime provides both), the package list, the .deb files.
TMPDIR=$work/tmp SOURCE_DATE_EPOCH=$base_epoch nice -n 10 mmdebstrap \
  --mode=root --variant=minbase --architectures="$ARCH" \
  --format=tar --components=main,contrib \
  --dpkgopt="$repo/deploy/image/dpkg.cfg" \
  --aptopt='Acquire::Retries "3"' \
  --include="${packages[*]}" \
  --skip=essential/unlink \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --setup-hook='mkdir -p "$1/var/cache/apt/archives" && find "$DOTS_IMAGE_DEBS_IN" -maxdepth 1 -name "*.deb" -exec cp -t "$1/var/cache/apt/archives" {} +' \
  --customize-hook="$here/customize.sh" \
  --customize-hook='rm -f "$1/etc/hostname" "$1/etc/resolv.conf"' \
  --customize-hook='chroot "$1" dpkg-query -W -f="\${binary:Package} \${Version}\n" | LC_ALL=C sort >"$DOTS_IMAGE_DPKG_LIST"' \
  --customize-hook='find "$1/var/cache/apt/archives" -maxdepth 1 -name "*.deb" -exec cp -t "$DOTS_IMAGE_DEBS_OUT" {} +' \
  "$SUITE" - "${sources[@]}" \
  2>"$work/mmdebstrap.log" |
  mmtarfilter --path-exclude='/dev/*' >"$work/debian.tar" ||
  { tail -n 30 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }

# The second layer: the binary alone, owned by root, dated HEAD's commit.
tar -C "$work/dots" --sort=name --format=posix \
  --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
  --mtime="@$head_epoch" --owner=0 --group=0 --numeric-owner \
  -cf "$work/dots.tar" ".$ENTRYPOINT"

log "OCI image $tag"
layout=$work/layout
ref=$layout:$tag
history_at=$(date -u -d "@$base_epoch" +%Y-%m-%dT%H:%M:%SZ)
umoci init --layout "$layout"
umoci new --image "$ref"
umoci raw add-layer --image "$ref" --history.created "$history_at" \
  --history.created_by "mmdebstrap --variant=minbase $SUITE (main, contrib): ${packages[*]}" \
  "$work/debian.tar"
umoci raw add-layer --image "$ref" --history.created "$created" \
  --history.created_by "dots $VERSION (CGO_ENABLED=0 go build -trimpath)" \
  "$work/dots.tar"
labels=(
  "org.opencontainers.image.title=dots"
  "org.opencontainers.image.description=dots CSI driver: controller, node plugin and ZFS/NFS storage server"
  "org.opencontainers.image.version=$VERSION"
  "org.opencontainers.image.revision=$REVISION"
  "org.opencontainers.image.source=$SOURCE_URL"
  "org.opencontainers.image.url=$SOURCE_URL"
  "org.opencontainers.image.created=$created"
)
config_args=(--no-history --image "$ref" --created "$created" --architecture "$goarch" --os linux
  --config.entrypoint "$ENTRYPOINT" --config.workingdir /
  --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
for l in "${labels[@]}"; do config_args+=(--config.label "$l" --manifest.annotation "$l"); done
umoci config "${config_args[@]}"
umoci gc --layout "$layout"
chmod -R a+rX "$layout"

# OUT.tar: the layout, plus the manifest.json that `docker load` reads.
manifest=$layout/blobs/sha256/$(jq -r '.manifests[0].digest | ltrimstr("sha256:")' "$layout/index.json")
mkdir "$work/archive"
jq --arg tag "$IMAGE_NAME:$tag" '[{
  Config: ("blobs/sha256/" + (.config.digest | ltrimstr("sha256:"))),
  RepoTags: [$tag],
  Layers: [.layers[].digest | "blobs/sha256/" + ltrimstr("sha256:")]
}]' "$manifest" >"$work/archive/manifest.json"
tar --sort=name --format=posix \
  --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
  --mtime="@$head_epoch" --owner=0 --group=0 --numeric-owner \
  -cf "$work/image.tar" -C "$layout" blobs index.json oci-layout -C "$work/archive" manifest.json

# Keep exactly this build's packages for the next one.
rm -rf "$cache/debs-$ARCH.old"
mv "$cache/debs-$ARCH" "$cache/debs-$ARCH.old"
mv "$work/debs" "$cache/debs-$ARCH"
rm -rf "$cache/debs-$ARCH.old"

rm -rf "$out" "$out.tar" "$out.dpkg.txt"
mv "$layout" "$out"
mv "$work/image.tar" "$out.tar"
mv "$work/dpkg.txt" "$out.dpkg.txt"

manifest=$out/blobs/sha256/${manifest##*/}
layers=$(jq -r '[.layers[].digest] | join(",")' "$manifest")
size=$(jq '[.layers[].size] | add' "$manifest")
echo "image-build: $out tag=$tag manifest=$(jq -r '.manifests[0].digest' "$out/index.json") layers=$layers size_mb=$((size / 1000000)) packages=$(wc -l <"$out.dpkg.txt") build_s=$(($(date +%s) - start))"
