#!/usr/bin/env bash
# Pushes the OCI image layout that `make image` wrote to a registry, with
# crane (github.com/google/go-containerregistry, built once from the Go module
# proxy by hack/k8s/build-tools.sh and cached). Credentials are crane's and
# docker's: ~/.docker/config.json (`crane auth login REGISTRY -u USER
# --password-stdin`). Prints the pushed reference with its digest.
#
# Usage: hack/image/push.sh LAYOUT IMAGE
#   e.g. hack/image/push.sh bin/dots-image registry.example.com/dots/dots:0.1.0
set -euo pipefail

layout=${1:-}
image=${2:-}
if [ -z "$image" ]; then
  echo "image-push: no IMAGE: make image-push IMAGE=registry.example.com/NAME:TAG" >&2
  exit 2
fi
if [ ! -f "$layout/index.json" ]; then
  echo "image-push: no OCI image layout at '$layout': run make image first" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=$("$here/../k8s/build-tools.sh" crane)
"$tools/bin/crane" push "$layout" "$image"
