//go:build integration

package zfs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/pkg/zfs"
)

// Streams that break: a receive or a send killed mid-way leaves the
// replica at its previous snapshot (zfs-fuse: no resumable receive; the
// next stream restarts from the held base).

// cutStream streams like stream, but the receiver's context ends after
// cutAt bytes and the connection breaks there. It returns the receive's
// error.
func cutStream(t *testing.T, src, dst *zfs.Pool, v *zfs.Volume, base, snap string, cutAt int64) error {
	t.Helper()
	c := ctx(t)
	rctx, cancel := context.WithCancel(c)
	defer cancel()
	pr, pw := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		err := src.Send(c, v.Name, base, snap, pw)
		pw.CloseWithError(err)
		sent <- err
	}()
	r := &cutReader{r: pr, left: cutAt, cancel: cancel}
	_, err := dst.Receive(rctx, zfs.ReplicaSpecOf(v, src.Name(), snap, base), r)
	pr.CloseWithError(errors.New("receiver gone"))
	if serr := <-sent; serr == nil && err != nil {
		t.Errorf("the sender did not notice its receiver went away")
	}
	return err
}

// cutReader passes left bytes, then ends its receiver's context and fails
// like a broken connection.
type cutReader struct {
	r      io.Reader
	left   int64
	cancel context.CancelFunc
}

func (c *cutReader) Read(b []byte) (int, error) {
	if c.left <= 0 {
		c.cancel()
		return 0, errors.New("connection reset")
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	return n, err
}

// cutWriter passes left bytes to w, then ends its sender's context and
// fails.
type cutWriter struct {
	w      io.Writer
	left   int64
	cancel context.CancelFunc
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > c.left {
		n, _ := c.w.Write(b[:c.left])
		c.left = 0
		c.cancel()
		return n, errors.New("sender killed")
	}
	n, err := c.w.Write(b)
	c.left -= int64(n)
	return n, err
}

func TestReplicaInterruptedFullAndSender(t *testing.T) {
	a, b := replPools(t)
	c := ctx(t)
	v := mustCreate(t, a, zfs.VolumeSpec{Name: "v", Capacity: 64 * mib})
	writeRandom(t, v.Mountpoint, "big", 6<<20)
	s1, _, _ := a.ReplSnapshot(c, "v")
	want1 := sums(t, v.Mountpoint)
	rds := replicaDS(b, "v")

	// A full stream cut mid-way leaves no replica at all.
	if err := cutStream(t, a, b, v, "", s1, 1<<20); err == nil {
		t.Fatal("a cut full stream was received")
	}
	// zfs-fuse's daemon finishes a killed recv on its own, a moment after
	// the command died: the half-received dataset goes then. Until it does
	// it is no copy (no replication snapshot), and a receive replaces it.
	if st, err := b.ReplicaState(c, "v"); err != nil || st.Exists {
		t.Fatalf("state after a cut full stream = %+v, %v", st, err)
	}
	poll.Until(t, 30*time.Second, "the half-received replica gone", func() error {
		if names := zfsNames(t, b.Name()+"/dots/replicas"); len(names) != 1 {
			return fmt.Errorf("replicas/ holds %v", names)
		}
		return nil
	})
	mustStream(t, a, b, v, "", s1)

	// A full stream over an existing replica (no common snapshot) that is
	// cut keeps the old replica whole, and leaves nothing aside.
	writeRandom(t, v.Mountpoint, "big2", 4<<20)
	s2, _, _ := a.ReplSnapshot(c, "v")
	want2 := sums(t, v.Mountpoint)
	if err := cutStream(t, a, b, v, "", s2, 1<<20); err == nil {
		t.Fatal("a cut full stream was received")
	}
	if names := zfsNames(t, b.Name()+"/dots/replicas"); !slices.Equal(names, []string{b.Name() + "/dots/replicas", rds, rds + "@" + s1}) {
		t.Fatalf("after a cut full stream over a replica: %v", names)
	}
	wantSums(t, "replica after a cut full stream", snapSums(t, b, rds+"@"+s1), want1)

	// The sender killed mid-stream: the same.
	sctx, cancel := context.WithCancel(c)
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		err := a.Send(sctx, "v", s1, s2, &cutWriter{w: pw, left: 1 << 20, cancel: cancel})
		pw.CloseWithError(err)
	}()
	_, err := b.Receive(c, zfs.ReplicaSpecOf(v, a.Name(), s2, s1), pr)
	pr.Close()
	if err == nil {
		t.Fatal("the stream of a killed sender was received")
	}
	t.Logf("killed sender: receive said %v", err)
	if got := replSnaps(t, rds); !slices.Equal(got, []string{s1}) {
		t.Errorf("after a killed sender: %v", got)
	}

	// A full stream over the replica replaces it.
	mustStream(t, a, b, v, "", s2)
	if got := replSnaps(t, rds); !slices.Equal(got, []string{s2}) {
		t.Errorf("after a full stream over the replica: %v", got)
	}
	wantSums(t, "replica replaced by a full stream", snapSums(t, b, rds+"@"+s2), want2)
}
