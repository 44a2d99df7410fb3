#!/usr/bin/env bash
# What both image builds do once the packages of deploy/image/packages.txt
# are installed: mmdebstrap runs it as a customize hook with the new root as
# $1 (hack/image/build.sh); deploy/Dockerfile runs it as `customize.sh /`.
set -euo pipefail
root=${1:?usage: customize.sh ROOT}
[ -d "$root/etc" ] || { echo "customize.sh: $root is no root file system" >&2; exit 1; }

# zfsutils-linux's postinst writes a random /etc/hostid. Baked into the
# image it would be the same on every server, and ZFS records the host id
# in the pools it imports: the node's own must be the one that counts.
rm -f "$root/etc/hostid"
# ganesha's VFS FSAL finds the file system of each export in /etc/mtab,
# which no container runtime but Docker's makes: without it every export
# fails ("setmntent(/etc/mtab): No such file or directory").
ln -sfn ../proc/self/mounts "$root/etc/mtab"
# Documentation that escaped dpkg's path-exclude (deploy/image/dpkg.cfg),
# and dpkg's and debconf's backup files.
rm -rf "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/lintian"
if [ -d "$root/usr/share/doc" ]; then
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
fi
rm -f "$root"/var/lib/dpkg/*-old "$root"/var/cache/debconf/*-old
