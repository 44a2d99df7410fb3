// Package helm holds the tests of the Helm chart in deploy/helm/dots: they
// run `helm lint` and `helm template` with several value sets and check the
// rendered manifests; what the chart looks up on upgrade (its certificates,
// the CSIDriver) is served by a fake API server (lookup_test.go). helm is
// built by hack/k8s/build-tools.sh (cached).
package helm
