#!/usr/bin/env bash
# Pushes the OCI image layouts that `make image` wrote to a registry, with
# crane (github.com/google/go-containerregistry, built once from the Go module
# proxy by hack/k8s/build-tools.sh and cached). Credentials are crane's and
# docker's: ~/.docker/config.json (`crane auth login REGISTRY -u USER
# --password-stdin`). Prints the pushed reference with its digest.
#
# Usage: hack/image/push.sh IMAGE LAYOUT [LAYOUT...]
#   e.g. hack/image/push.sh registry.example.com/dots/dots:0.1.0 bin/dots-image
# One layout: its image is pushed as IMAGE. Several (one per architecture,
# from one commit): each image is pushed by digest, then an index of them as
# IMAGE, so that every node pulls its own.
set -euo pipefail

image=${1:-}
if [ -z "$image" ]; then
  echo "image-push: no IMAGE: make image-push IMAGE=registry.example.com/NAME:TAG" >&2
  exit 2
fi
shift
[ $# -gt 0 ] || { echo "usage: push.sh IMAGE LAYOUT [LAYOUT...]" >&2; exit 2; }
for l in "$@"; do
  if [ ! -f "$l/index.json" ]; then
    echo "image-push: no OCI image layout at '$l': run make image first (with the same IMAGE_ARCHES)" >&2
    exit 2
  fi
done
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=$("$here/../k8s/build-tools.sh" crane)
crane=$tools/bin/crane

if [ $# -eq 1 ]; then
  exec "$crane" push "$1" "$image"
fi

# The repository: IMAGE without its tag (a ':' after the last '/') or digest.
repo=${image%@*}
case ${repo##*/} in *:*) repo=${repo%:*} ;; esac
blob() { echo "$1/blobs/sha256/${2#sha256:}"; }
manifests=() seen=" " revision=""
for l in "$@"; do
  digest=$(jq -r '.manifests[0].digest' "$l/index.json")
  config=$(blob "$l" "$(jq -r '.config.digest' "$(blob "$l" "$digest")")")
  arch=$(jq -r '.os + "/" + .architecture' "$config")
  rev=$(jq -r '.config.Labels["org.opencontainers.image.revision"] // ""' "$config")
  case $seen in *" $arch "*) echo "image-push: two images for $arch" >&2; exit 2 ;; esac
  seen+="$arch "
  if [ -n "$revision" ] && [ "$rev" != "$revision" ]; then
    echo "image-push: $l is of revision $rev, the others of $revision: rebuild them together" >&2
    exit 2
  fi
  revision=$rev
  "$crane" push "$l" "$repo@$digest" >/dev/null
  manifests+=(--manifest "$repo@$digest")
done
"$crane" index append "${manifests[@]}" --tag "$image"
