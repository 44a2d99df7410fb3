// Package replication carries a volume's replicas between storage servers
// (README "Replicas"): the gRPC service dots.replication.v1.Replication
// every server offers beside CSI on its endpoint (hand-written, no protoc:
// JSON messages of pkg/api, raw stream chunks), its typed Client (servers
// to each other, the controller to servers), and the server-side Manager:
// the stream receiver with its generation checks, the sender loop of each
// replicated primary, handover, promotion and the start-up rule that keeps
// a stale primary from serving.
package replication

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"

	"github.com/dots-csi/dots/pkg/api"
)

// ServiceName is the gRPC service's full name.
const ServiceName = "dots.replication.v1.Replication"

// Method names of the service.
const (
	methodState       = "State"
	methodSetReplicas = "SetReplicas"
	methodSync        = "Sync"
	methodHandover    = "Handover"
	methodPromote     = "Promote"
	methodDropReplica = "DropReplica"
	methodCopy        = "Copy"
	methodReceive     = "Receive"
)

func fullMethod(m string) string { return "/" + ServiceName + "/" + m }

// Kinds of stream a Receive carries.
const (
	KindReplica = "replica" // into POOL/dots/replicas/NAME
	KindCopy    = "copy"    // a new volume NewName (a cross-server clone or restore)
)

// StreamHeader is the first message of a Receive stream; zfs send's bytes
// follow as Chunks.
type StreamHeader struct {
	Volume     string `json:"volume"`
	Snapshot   string `json:"snapshot"`       // the snapshot the stream ends at
	Base       string `json:"base,omitempty"` // its incremental base; "" for a full stream
	Generation uint64 `json:"generation"`
	Source     string `json:"source"` // the sending server
	// The volume's settings as the primary has them, so that a promoted
	// replica serves with the same: capacity (refquota), thick, tunables,
	// squashing, creation time.
	Capacity   int64             `json:"capacity"`
	Thick      bool              `json:"thick,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
	Access     *api.Access       `json:"access,omitempty"`
	Created    time.Time         `json:"created,omitzero"`
	// Published: the nodes the volume is published to (a promoted
	// replica's export admits them).
	Published []Publication `json:"published,omitempty"`
	Kind      string        `json:"kind"`
	// Copy is the request of a KindCopy stream (its new volume's name,
	// size and parameters).
	Copy *api.CopyRequest `json:"copy,omitempty"`
	// UserSnapshots are the user snapshots the sender holds, so the
	// replica destroys those deleted on the primary. Never omitted by a
	// sender that lists them ([] when there are none): absent (null, an
	// older sender) means the replica destroys none.
	UserSnapshots []UserSnapshot `json:"userSnapshots"`
}

// UserSnapshot is one user snapshot a stream's sender holds.
type UserSnapshot struct {
	Name  string `json:"name"`
	Group string `json:"group,omitempty"` // the group snapshot it belongs to
}

// Publication is one node a volume is published to.
type Publication struct {
	Node     string `json:"node"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// StateRequest asks for one server's copy of a volume.
type StateRequest struct {
	Volume string `json:"volume"`
}

// Empty is the answer of calls that return nothing.
type Empty struct{}

// Service is what a server implements: the contract's unary calls and the
// receiving end of a stream.
type Service interface {
	api.ReplicationServer
	// Receive applies the stream r (zfs send's bytes after h) and answers
	// the receiver's copy as it is afterwards.
	Receive(ctx context.Context, h StreamHeader, r io.Reader) (api.VolumeState, error)
}

// Register adds the service to a gRPC server.
func Register(g *grpc.Server, s Service) { g.RegisterService(&serviceDesc, s) }

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*Service)(nil),
	Methods: []grpc.MethodDesc{
		unary(methodState, func(s Service, ctx context.Context, r *StateRequest) (any, error) { return s.State(ctx, r.Volume) }),
		unary(methodSetReplicas, func(s Service, ctx context.Context, r *api.SetReplicasRequest) (any, error) {
			return s.SetReplicas(ctx, *r)
		}),
		unary(methodSync, func(s Service, ctx context.Context, r *api.SyncRequest) (any, error) { return s.Sync(ctx, *r) }),
		unary(methodHandover, func(s Service, ctx context.Context, r *api.HandoverRequest) (any, error) {
			return s.Handover(ctx, *r)
		}),
		unary(methodPromote, func(s Service, ctx context.Context, r *api.PromoteRequest) (any, error) { return s.Promote(ctx, *r) }),
		unary(methodDropReplica, func(s Service, ctx context.Context, r *api.DropReplicaRequest) (any, error) {
			return Empty{}, s.DropReplica(ctx, *r)
		}),
		unary(methodCopy, func(s Service, ctx context.Context, r *api.CopyRequest) (any, error) { return Empty{}, s.Copy(ctx, *r) }),
	},
	Streams: []grpc.StreamDesc{{StreamName: methodReceive, Handler: receiveHandler, ClientStreams: true}},
}

// unary is a method's descriptor: decode Req, run the interceptor (the
// daemon's logging and error table) around call.
func unary[Req any](name string, call func(Service, context.Context, *Req) (any, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(Req)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) { return call(srv.(Service), ctx, req.(*Req)) }
		if ic == nil {
			return h(ctx, in)
		}
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod(name)}, h)
	}}
}

// receiveHandler reads the header, then hands the chunks to the service
// as one reader.
func receiveHandler(srv any, stream grpc.ServerStream) error {
	var h StreamHeader
	if err := stream.RecvMsg(&h); err != nil {
		return err
	}
	r := &chunkReader{stream: stream}
	st, err := srv.(Service).Receive(stream.Context(), h, r)
	if err != nil {
		return err
	}
	// zfs recv stops at the stream's end record: what the sender still
	// sends (nothing, normally) is read, so its close is seen.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	return stream.SendMsg(&st)
}

// chunkReader is a stream's chunks as one io.Reader; the sender closing
// its side is io.EOF, a cancelled sender an error (so zfs recv fails
// instead of taking a truncated stream as complete).
type chunkReader struct {
	stream grpc.ServerStream
	buf    Chunk
	err    error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		var c Chunk
		if err := r.stream.RecvMsg(&c); err != nil {
			r.err = err
			if errors.Is(err, io.EOF) {
				r.err = io.EOF
			}
			continue
		}
		r.buf = c
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
