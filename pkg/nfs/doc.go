// Package nfs exports directories over NFS with NFS-Ganesha.
//
// A dots storage server runs one ganesha.nfsd (FSAL VFS) as a supervised
// child process. The server-wide config is written once per start; it
// %includes the exports file, which %includes 256 list files, which
// %include one file per export (exports.d/ID.conf, by ID modulo 256), so a
// change to one export writes its block and one short list (files.go).
//
// # How a change reaches ganesha
//
// With GaneshaConfig.DBus auto or on, a private dbus-daemon runs beside
// ganesha (unix socket in RunDir/dbus, only root may connect or own
// org.ganesha.nfsd) and ganesha is pointed at it with
// DBUS_SYSTEM_BUS_ADDRESS. Each change is then one call to ganesha's export
// manager: AddExport or UpdateExport of the export's own file, or
// RemoveExport of its ID. A call returns once the change is live, and
// ganesha parses nothing but that file (dbus.go, exportmgr.go). Only
// changes count on our side too: the supervisor keeps the IDs changed
// since its last pass and updates what the process serves in place
// (validation of a new pseudo path against the others is the one
// O(exports) step left, microseconds each).
// Ganesha connects to its bus only while starting, and exits when the bus
// goes, so the bus is started before ganesha and again before each
// restart of it; a bus that dies alone is replaced at the next start.
//
// Otherwise, and whenever a call fails or there are too many changes at
// once, the exports file is reloaded with SIGHUP. Ganesha re-reads every
// export on SIGHUP, so concurrent changes are coalesced into one reload,
// and a change returns once ganesha's log says the reload is complete (see
// logscan.go). Either way the exports file is the whole truth at a start.
//
// # When an export is usable
//
// With SIGHUP there is no reply, so the signal is ganesha's own log:
// "Reread exports complete" is logged after the new export table is in
// place and mounted in the pseudo filesystem; the per-block errors that
// follow it are collected for a further 15 ms of log silence. Errors name
// the file of the rejected block, the export's own, so a refused export
// fails its own Export call with ErrExportFailed. An integration test uses
// each new export exactly once, straight after Export returns.
// TestExportChangeCost measures both ways on a 2-core VM (runs vary): an
// added export usable 1-2 ms after the call with 10 or 800 exports over
// DBus, against 26-28 ms and 0.5-0.6 s with SIGHUP. With 10,000 exports an
// add took 14 ms and a removal 1.5 ms, while reading 10,000 exports at a
// start (or a SIGHUP) takes ganesha 4.3 about two minutes: its config
// parsing grows faster than the export count.
//
// # Stable file handles
//
// A client keeps NFS file handles across server restarts and across moves
// of the pool to another node, so every part of a handle must survive both.
// A ganesha VFS handle holds:
//
//   - the Export_Id (16 bits). The caller allocates it once per volume and
//     persists it with the volume.
//   - the fsid of the underlying file system, as ganesha derives it: the
//     device's blkid UUID, else statfs f_fsid, else the device number; or
//     always the device number when NFS_CORE_PARAM fsid_device is true, or
//     a conversion selected by the VFS FSAL's fsid_type. On OpenZFS,
//     datasets have no block device and f_fsid comes from the dataset's
//     fsid guid, stored in the pool, so it moves with the pool. We set
//     fsid_device = false and leave fsid_type unset, because the Device
//     choices are exactly what a move changes (anonymous device numbers
//     differ per mount and per node), and the other fsid_type values only
//     reshape the same number.
//   - the kernel handle from name_to_handle_at: on ZFS the object number
//     and generation, also stored in the pool.
//
// Ganesha 4.3 (Debian 12) cannot put a configured number into the handle's
// fsid (fsid_override came later). Each export does set Filesystem_Id to
// "dots".ID, which ganesha reports as the fsid attribute for every object
// in the export, so clients see one stable file system per volume whatever
// node serves it.
//
// zfs-fuse, used on development machines, reports f_fsid 0, so there
// ganesha falls back to the FUSE device number, which a remount usually
// gets back (the kernel hands out the lowest free one) but not always.
// Worse, its FUSE mount has no export support: open_by_handle_at finds
// only inodes the kernel still caches (measured: a handle taken before a
// pool export and import opens while its inode is cached, and fails with
// ESTALE after `echo 3 > /proc/sys/vm/drop_caches`). A pool export drops
// them all, so there handles survive a ganesha restart but not a server
// restart or move (test/failover counts the ESTALE). OpenZFS resolves
// handles from the pool (zpl_fh_to_dentry): they survive both.
//
// NFSv4 client state (for lock and open reclaim after a restart or move)
// is kept with RecoveryBackend fs under GaneshaConfig.RecoveryDir, which
// belongs on the pool; Clustered = false keeps node ids out of its layout.
package nfs
