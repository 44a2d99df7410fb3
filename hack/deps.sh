#!/usr/bin/env bash
# Installs and starts what dots' tests and local stack need on a Debian 12
# machine. Idempotent: a second run changes nothing and takes a second.
# With arguments (hack/deps.sh PACKAGE...), installs just those packages and
# starts nothing (the image build's tools: hack/image/build.sh).
set -euo pipefail

pkgs=(zfs-fuse nfs-ganesha nfs-ganesha-vfs libnfs-utils rpcbind)
[ $# -eq 0 ] || pkgs=("$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ $# -eq 0 ] || exit 0

# One zfs-fuse daemon serves the whole machine; it forks when started bare.
if ! pgrep -x zfs-fuse >/dev/null; then
  echo "deps: starting zfs-fuse"
  zfs-fuse
  for _ in $(seq 50); do zpool list >/dev/null 2>&1 && break; sleep 0.1; done
fi
# NFSv3 (used by the libnfs client in tests and the demo) registers with rpcbind.
if ! pgrep -x rpcbind >/dev/null; then
  echo "deps: starting rpcbind"
  rpcbind -w
fi
