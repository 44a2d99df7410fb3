#!/usr/bin/env bash
# Runs a command inside an unpacked image (umoci raw unpack) roughly as a
# container runtime would, as root, without one: in a mount namespace of its
# own, with the root a mount point of its own (so /proc/self/mounts, and
# ganesha, see the file system of /), /proc, and a /dev holding only null,
# zero, full, random, urandom and tty. The network and the pid namespace
# are the machine's. Everything it mounts goes with the command.
#
# Usage: hack/image/run.sh [--bind DIR]... ROOTFS COMMAND [ARG...]
#   --bind DIR  shows the machine's DIR at the same path inside the image
#               (e.g. a test's run directory).
# The command runs with the image's PATH and nothing else of the caller's
# environment; it replaces this script (same pid: signals reach it).
set -euo pipefail

binds=()
while [ $# -gt 0 ]; do
  case $1 in
    --bind) binds+=("$(realpath -e "$2")"); shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "usage: run.sh [--bind DIR]... ROOTFS COMMAND [ARG...]" >&2; exit 2; }
root=$(realpath -e "$1")
shift
[ -x "$root/bin/sh" ] || { echo "run.sh: $root is no unpacked image" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh: must run as root" >&2; exit 2; }

# The setup runs in the new namespace with the machine's tools; its last
# step becomes the command.
setup='
set -eu
root=$1; nbinds=$2; shift 2
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
for d in null zero full random urandom tty; do
  : >"$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
while [ "$nbinds" -gt 0 ]; do
  mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
  shift; nbinds=$((nbinds - 1))
done
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  chroot "$root" "$@"
'
exec unshare --mount --propagation private -- sh -c "$setup" sh "$root" "${#binds[@]}" "${binds[@]}" "$@"
