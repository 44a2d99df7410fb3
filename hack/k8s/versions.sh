# Pinned versions of the Kubernetes tools the chart tests and the e2e test
# build from the Go module proxy. Each tool is cached under a hash of its own
# inputs, so changing one version here rebuilds only that tool. etcd and Kubernetes versions are pinned in etcd/go.mod
# and kube/go.mod; they are repeated here for the version stamps.
ETCD_VERSION=v3.6.16
KUBE_VERSION=v1.34.4
PROVISIONER_MODULE=github.com/kubernetes-csi/external-provisioner/v5
PROVISIONER_VERSION=v5.3.0
SNAPSHOTTER_MODULE=github.com/kubernetes-csi/external-snapshotter/v8
SNAPSHOTTER_CLIENT_MODULE=github.com/kubernetes-csi/external-snapshotter/client/v8
SNAPSHOTTER_VERSION=v8.7.0
RESIZER_MODULE=github.com/kubernetes-csi/external-resizer
RESIZER_VERSION=v1.14.0
ATTACHER_MODULE=github.com/kubernetes-csi/external-attacher/v4
ATTACHER_VERSION=v4.13.0
HELM_MODULE=helm.sh/helm/v3
HELM_VERSION=v3.22.0
# crane pushes the image that `make image` builds (make image-push).
CRANE_MODULE=github.com/google/go-containerregistry
CRANE_VERSION=v0.22.1
# Bump to rebuild every tool after changing how build-tools.sh builds them
# (the cache is keyed by the versions, not by the script).
TOOLS_REVISION=1
