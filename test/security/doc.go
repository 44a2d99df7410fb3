// Package security proves, on real servers, who may reach what: NFS
// exports that admit only the nodes a volume is published to (simulated
// nodes in network namespaces, reading and writing with libnfs), root and
// all squashing with the ownership a new volume's root gets.
package security
