// Package bench is `make bench`: dots measured against the raw work it
// wraps, in one run, on the same pools. It starts real storage servers and
// the controller (the `dots` binary) on fresh zfs-fuse pools, and the real
// controller over simulated servers (internal/memserver) for the scale one
// machine cannot hold; for each figure it prints one `bench: figure=...`
// line, a table at the end, and writes JSON (DOTS_BENCH_OUT, default
// bench/results.json at the top of the repository). With -short (`make
// bench-short`, part of `make test`) it uses smaller sizes and fewer
// repetitions, and a miss of a target it measures fails the run. Its tests
// carry the integration build tag and run as root.
package bench
