// Package helm holds the tests of the Helm chart in deploy/helm/dots: they
// run `helm lint` and `helm template` with several value sets and check the
// rendered manifests. helm is built by hack/k8s/build-tools.sh (cached).
package helm
