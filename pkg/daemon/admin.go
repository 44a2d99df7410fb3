package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/csirpc"
)

// adminServer is HTTP on a unix socket only the daemon's user may open
// (csirpc.Listen makes it 0600): answers for operators, not the network.
type adminServer struct {
	lis  net.Listener
	http *http.Server
}

func listenAdmin(path string, handlers map[string]http.Handler) (*adminServer, error) {
	lis, err := csirpc.Listen("unix://" + path)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	for pattern, h := range handlers {
		mux.Handle(pattern, h)
	}
	return &adminServer{lis: lis, http: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// serve serves until ctx is done; the socket is removed when it stops.
func (a *adminServer) serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.http.Serve(a.lis) }()
	klog.InfoS("Serving admin HTTP", "socket", a.lis.Addr().String())
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return a.http.Shutdown(sctx)
	}
}
