// Package api is the contract between dots' cluster controller, its storage
// servers and its node plugin: the rules both sides of every call must agree
// on, and nothing else.
//
//   - names and IDs: which request names are valid, how a name maps to the ID
//     a server stores it under, and how a cluster ID (SERVER/ID) is written;
//   - sizes: the granularity volumes are sized in and how a CSI capacity
//     range resolves to one size;
//   - StorageClass parameters and the volume capabilities dots serves;
//   - the volume context keys the controller writes and the node reads;
//   - the checks of a CreateVolume request that the controller and every
//     server run alike;
//   - the sentinel errors of all of the above and the gRPC code each means.
//
// It imports no other dots package, so every other package may import it.
package api
