// Package image holds the tests of the one dots image. Without build tags
// (make test-unit, no root): the image's two builds, hack/image/build.sh
// (mmdebstrap and umoci) and deploy/Dockerfile, read the same package list,
// dpkg options and customize script, and agree on the entrypoint the chart
// relies on. With the `image` tag (make test-image, as root): the image that
// make image built, unpacked and run from the inside.
package image
