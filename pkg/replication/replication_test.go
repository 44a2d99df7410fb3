package replication

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
)

// fakeService records what it is sent and answers from its fields.
type fakeService struct {
	done     chan struct{} // a Receive ended (got, header and readErr are set)
	got      []byte
	header   StreamHeader
	readErr  error
	stateErr error
}

func (f *fakeService) State(_ context.Context, volume string) (api.VolumeState, error) {
	return api.VolumeState{Volume: volume, Exists: true, Role: api.RoleReplica, Generation: 3}, f.stateErr
}
func (f *fakeService) SetReplicas(_ context.Context, r api.SetReplicasRequest) (api.VolumeState, error) {
	return api.VolumeState{Volume: r.Volume, Interval: r.Interval}, nil
}
func (f *fakeService) Sync(context.Context, api.SyncRequest) (api.VolumeState, error) {
	return api.VolumeState{}, fmt.Errorf("volume v: %w", api.ErrNotPrimary)
}
func (f *fakeService) Handover(context.Context, api.HandoverRequest) (api.HandoverResult, error) {
	return api.HandoverResult{Final: "dots-repl-1"}, nil
}
func (f *fakeService) Promote(_ context.Context, r api.PromoteRequest) (api.VolumeState, error) {
	return api.VolumeState{}, fmt.Errorf("generation %d: %w", r.Generation, api.ErrStaleGeneration)
}
func (f *fakeService) DropReplica(context.Context, api.DropReplicaRequest) error {
	return fmt.Errorf("x: %w", api.ErrNotReplica)
}
func (f *fakeService) Copy(context.Context, api.CopyRequest) error { return nil }
func (f *fakeService) Receive(_ context.Context, h StreamHeader, r io.Reader) (api.VolumeState, error) {
	f.header = h
	b, err := io.ReadAll(r)
	f.got, f.readErr = b, err
	defer close(f.done)
	if err != nil {
		return api.VolumeState{}, err
	}
	return api.VolumeState{Volume: h.Volume, Exists: true, Latest: h.Snapshot}, nil
}

// serve runs svc on a real gRPC server with the daemons' interceptors and
// error table, and returns a client of it.
func serve(t *testing.T, svc Service) *Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := csirpc.NewServer(csirpc.NewCodes(api.ErrorCodes, ErrorCodes), csirpc.NewMetrics(prometheus.NewRegistry()))
	Register(g, svc)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	peers := NewPeers(grpc.WithTransportCredentials(insecure.NewCredentials()))
	t.Cleanup(func() { _ = peers.Close() })
	c, err := peers.Client(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := peers.Client(lis.Addr().String()); again != c {
		t.Error("a second Client of one address is a new connection")
	}
	return c
}

func TestUnaryCallsAndSentinels(t *testing.T) {
	svc := &fakeService{}
	c := serve(t, svc)
	ctx := context.Background()
	st, err := c.State(ctx, "v1")
	if err != nil || st.Volume != "v1" || st.Generation != 3 || st.Role != api.RoleReplica {
		t.Fatalf("State: %+v, %v", st, err)
	}
	if st, err := c.SetReplicas(ctx, api.SetReplicasRequest{Volume: "v1", Interval: 1500e6}); err != nil || st.Interval != 1500e6 {
		t.Fatalf("SetReplicas: %+v, %v", st, err)
	}
	if r, err := c.Handover(ctx, api.HandoverRequest{Volume: "v1"}); err != nil || r.Final != "dots-repl-1" {
		t.Fatalf("Handover: %+v, %v", r, err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"Sync", func() error { _, err := c.Sync(ctx, api.SyncRequest{Volume: "v"}); return err }(), api.ErrNotPrimary},
		{"Promote", func() error { _, err := c.Promote(ctx, api.PromoteRequest{Volume: "v", Generation: 2}); return err }(), api.ErrStaleGeneration},
		{"DropReplica", c.DropReplica(ctx, api.DropReplicaRequest{Volume: "v"}), api.ErrNotReplica},
	} {
		if !errors.Is(tc.err, tc.want) || status.Code(tc.err) != codes.FailedPrecondition {
			t.Errorf("%s: %v (code %s), want %v as FailedPrecondition", tc.name, tc.err, status.Code(tc.err), tc.want)
		}
	}
	svc.stateErr = fmt.Errorf("v: %w", ErrNoCopy)
	if _, err := c.State(ctx, "v"); !errors.Is(err, ErrNoCopy) || status.Code(err) != codes.NotFound {
		t.Errorf("State of no copy: %v", err)
	}
}

func TestReceiveStreamsChunks(t *testing.T) {
	svc := &fakeService{done: make(chan struct{})}
	c := serve(t, svc)
	data := make([]byte, 3*chunkSize+12345) // several chunks and a partial one
	for i := range data {
		data[i] = byte(i * 7)
	}
	h := StreamHeader{Volume: "v1", Snapshot: "dots-repl-5", Base: "dots-repl-4", Generation: 2, Kind: KindReplica, Capacity: 1 << 20}
	st, n, err := c.Receive(context.Background(), h, func(w io.Writer) error {
		// Written in odd pieces, as zfs send's pipe delivers them.
		for off := 0; off < len(data); off += 1000 {
			if _, err := w.Write(data[off:min(off+1000, len(data))]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	<-svc.done
	if n != int64(len(data)) || sha256.Sum256(svc.got) != sha256.Sum256(data) {
		t.Fatalf("sent %d, received %d bytes; equal: %t", n, len(svc.got), bytes.Equal(svc.got, data))
	}
	if svc.header.Base != h.Base || svc.header.Capacity != h.Capacity || st.Latest != h.Snapshot {
		t.Fatalf("header %+v, state %+v", svc.header, st)
	}
}

// A sender that fails mid-stream must not leave the receiver with a
// stream that looks complete: its reader fails.
func TestReceiveSenderFailureIsNotEOF(t *testing.T) {
	svc := &fakeService{done: make(chan struct{})}
	c := serve(t, svc)
	boom := errors.New("zfs send died")
	_, _, err := c.Receive(context.Background(), StreamHeader{Volume: "v1", Kind: KindReplica}, func(w io.Writer) error {
		if _, err := w.Write(make([]byte, 2*chunkSize)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Receive: %v, want the sender's error", err)
	}
	<-svc.done // the handler ends after the client saw the stream fail
	if svc.readErr == nil || errors.Is(svc.readErr, io.EOF) {
		t.Fatalf("the receiver read %d bytes and err %v: a cancelled stream must be an error, not EOF", len(svc.got), svc.readErr)
	}
}
