// Package replicas tests a volume's replicas on real storage servers
// (`dots server` processes on zfs-fuse pools with NFS-Ganesha; see
// internal/replenv), driven as the controller drives them: CSI for the
// volume, the replication service for replicas and promotions; data
// written and read through NFS (libnfs). It prints the measured figures
// of README "Replicas": replication lag, RPO and RTO of a promotion. Its
// tests carry the integration build tag (`make test-replicas`).
package replicas
