// Package failover measures what NFS clients see when a storage server
// moves to another node with its pool and its address, crashes and is
// started elsewhere, or restarts in place (the rolling upgrade), on real
// servers: nodes are network namespaces on a bridge, the pool file is the
// cloud PV, the server's address is the Service VIP the test moves, and a
// client in a namespace of its own writes a numbered record every 100 ms
// through one NFS file handle it holds across every move (see
// client_test.go). `make test-failover` runs it with repetitions; `make
// test` once. Each case prints one line:
//
//	failover: CASE first_write_s=X max_gap_s=Y lost=0 estale=N ...
package failover
