package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
)

// Client calls one server's replication service. It implements
// api.ReplicationServer; errors carrying one of the contract's
// replication sentinels wrap it again (errors.Is works across the wire),
// and keep their gRPC status, so a relayed error keeps its code.
type Client struct {
	cc grpc.ClientConnInterface
}

var _ api.ReplicationServer = (*Client)(nil)

// NewClient returns a client over cc (a connection to a server's gRPC
// endpoint).
func NewClient(cc grpc.ClientConnInterface) *Client { return &Client{cc: cc} }

func (c *Client) invoke(ctx context.Context, method string, in, out any) error {
	return remoteError(c.cc.Invoke(ctx, fullMethod(method), in, out, grpc.ForceCodec(codec{})))
}

// call is invoke for a method that answers an Out.
func call[Out any](ctx context.Context, c *Client, method string, in any) (Out, error) {
	var out Out
	err := c.invoke(ctx, method, in, &out)
	return out, err
}

// State is the server's copy of a volume (Exists false when it has none).
func (c *Client) State(ctx context.Context, volume string) (api.VolumeState, error) {
	return call[api.VolumeState](ctx, c, methodState, StateRequest{Volume: volume})
}

// SetReplicas tells the server's primary where its replicas are.
func (c *Client) SetReplicas(ctx context.Context, req api.SetReplicasRequest) (api.VolumeState, error) {
	return call[api.VolumeState](ctx, c, methodSetReplicas, req)
}

// Sync replicates now and answers once every replica holds the new
// snapshot (or failed: see each ReplicaStatus.LastError).
func (c *Client) Sync(ctx context.Context, req api.SyncRequest) (api.VolumeState, error) {
	return call[api.VolumeState](ctx, c, methodSync, req)
}

// Handover makes the server's primary a replica after a final send.
func (c *Client) Handover(ctx context.Context, req api.HandoverRequest) (api.HandoverResult, error) {
	return call[api.HandoverResult](ctx, c, methodHandover, req)
}

// Promote makes the server's replica the primary.
func (c *Client) Promote(ctx context.Context, req api.PromoteRequest) (api.VolumeState, error) {
	return call[api.VolumeState](ctx, c, methodPromote, req)
}

// DropReplica destroys the server's replica.
func (c *Client) DropReplica(ctx context.Context, req api.DropReplicaRequest) error {
	return c.invoke(ctx, methodDropReplica, req, &Empty{})
}

// Copy asks the server to send a snapshot whole to another server, as a
// new volume.
func (c *Client) Copy(ctx context.Context, req api.CopyRequest) error {
	return c.invoke(ctx, methodCopy, req, &Empty{})
}

// chunkSize is how much of a zfs send stream goes in one message.
const chunkSize = 256 << 10

// Receive streams to the server: h, then what write writes (zfs send's
// output), in chunks. An error of write cancels the stream, so the
// receiver fails instead of applying a truncated one. It answers the
// receiver's copy afterwards and the bytes of stream sent.
func (c *Client) Receive(ctx context.Context, h StreamHeader, write func(io.Writer) error) (api.VolumeState, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.cc.NewStream(ctx, &serviceDesc.Streams[0], fullMethod(methodReceive), grpc.ForceCodec(codec{}))
	if err != nil {
		return api.VolumeState{}, 0, remoteError(err)
	}
	if err := stream.SendMsg(&h); err != nil {
		return api.VolumeState{}, 0, streamError(stream, err)
	}
	w := &chunkWriter{stream: stream, buf: make(Chunk, 0, chunkSize)}
	if err := write(w); err != nil {
		cancel()
		if w.err != nil { // the stream broke first: its error says why
			return api.VolumeState{}, w.n, streamError(stream, w.err)
		}
		return api.VolumeState{}, w.n, err
	}
	if err := w.flush(); err != nil {
		return api.VolumeState{}, w.n, streamError(stream, err)
	}
	if err := stream.CloseSend(); err != nil {
		return api.VolumeState{}, w.n, streamError(stream, err)
	}
	var st api.VolumeState
	if err := stream.RecvMsg(&st); err != nil {
		return api.VolumeState{}, w.n, remoteError(err)
	}
	return st, w.n, nil
}

// streamError is the receiver's answer when a send failed because it
// ended the stream (SendMsg then says only io.EOF).
func streamError(stream grpc.ClientStream, err error) error {
	if errors.Is(err, io.EOF) {
		var st api.VolumeState
		if rerr := stream.RecvMsg(&st); rerr != nil {
			return remoteError(rerr)
		}
	}
	return remoteError(err)
}

// chunkWriter sends what is written in chunks of chunkSize.
type chunkWriter struct {
	stream grpc.ClientStream
	buf    Chunk
	n      int64
	err    error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	written := 0
	for len(p) > 0 {
		k := min(len(p), chunkSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p, written = p[k:], written+k
		if len(w.buf) == chunkSize {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 || w.err != nil {
		return w.err
	}
	if err := w.stream.SendMsg(w.buf); err != nil {
		w.err = err
		return err
	}
	w.n += int64(len(w.buf))
	// gRPC keeps the marshalled bytes (the chunk itself, see codec) until
	// they are written out: the next chunk gets a buffer of its own.
	w.buf = make(Chunk, 0, chunkSize)
	return nil
}

// sentinels are the contract's errors a server's answer may carry; the
// client wraps them again so callers can test them with errors.Is.
var sentinels = []error{api.ErrStaleGeneration, api.ErrNotReplica, api.ErrNotPrimary, ErrNoCopy}

// remoteError keeps a status error's code and message and adds the
// sentinel its message names (the server's message is its error's text,
// which holds the sentinel's).
func remoteError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return err
	}
	for _, s := range sentinels {
		if strings.Contains(st.Message(), s.Error()) {
			return &wireError{sentinel: s, status: err}
		}
	}
	return err
}

// wireError is a server's answer carrying a sentinel.
type wireError struct {
	sentinel error
	status   error
}

func (e *wireError) Error() string   { return e.status.Error() }
func (e *wireError) Unwrap() []error { return []error{e.sentinel, e.status} }

// GRPCStatus keeps the answer's code when the error is relayed.
func (e *wireError) GRPCStatus() *status.Status {
	st, _ := status.FromError(e.status)
	return st
}

// Peers caches one connection per peer address; servers dial each other
// with the credentials given (client credentials of the server's own
// certificate, or insecure with --insecure).
type Peers struct {
	dial func(addr string) (grpc.ClientConnInterface, io.Closer, error)
	mu   sync.Mutex
	conn map[string]*Client
	cls  []io.Closer
}

// NewPeers returns a cache dialling with opts (transport credentials).
func NewPeers(opts ...grpc.DialOption) *Peers {
	return &Peers{
		dial: func(addr string) (grpc.ClientConnInterface, io.Closer, error) {
			cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
			if err != nil {
				return nil, nil, err
			}
			return cc, cc, nil
		},
		conn: map[string]*Client{},
	}
}

// Client returns the client of the server at addr (host:port).
func (p *Peers) Client(addr string) (*Client, error) {
	if addr == "" {
		return nil, fmt.Errorf("%w: a peer without an address", api.ErrInvalid)
	}
	p.mu.Lock() // grpc.NewClient does not connect: held briefly
	defer p.mu.Unlock()
	if c, ok := p.conn[addr]; ok {
		return c, nil
	}
	cc, cl, err := p.dial(addr)
	if err != nil {
		return nil, fmt.Errorf("dialling peer %s: %w", addr, err)
	}
	c := NewClient(cc)
	p.conn[addr], p.cls = c, append(p.cls, cl)
	return c, nil
}

// Close closes every connection.
func (p *Peers) Close() error {
	p.mu.Lock() // grpc.NewClient does not connect: held briefly
	defer p.mu.Unlock()
	var errs []error
	for _, c := range p.cls {
		errs = append(errs, c.Close())
	}
	p.conn, p.cls = map[string]*Client{}, nil
	return errors.Join(errs...)
}
