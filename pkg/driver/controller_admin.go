package driver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
)

// AdminHandlers are the controller's operations on the admin socket
// (owner-only, never on the network): promotion, drain and rebalance,
// with the request and answer shapes of pkg/api admin.go.
func (c *ControllerServer) AdminHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		api.AdminPathPromote: post(func(w http.ResponseWriter, r *http.Request) {
			var req api.PromoteVolumeRequest
			if !decode(w, r, &req) {
				return
			}
			// Not cancelled with the request: a client that leaves must not
			// stop a promotion between its handover and its promote.
			res, err := c.Promote(context.WithoutCancel(r.Context()), req.Volume, req.To, ReasonManual)
			if err != nil {
				adminError(w, err)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(res)
		}),
		api.AdminPathDrain: post(func(w http.ResponseWriter, r *http.Request) {
			var req api.DrainRequest
			if !decode(w, r, &req) {
				return
			}
			c.stream(w, r, func(ctx context.Context, emit func(api.MoveEvent)) error { return c.Drain(ctx, req.Server, emit) })
		}),
		api.AdminPathRebalance: post(func(w http.ResponseWriter, r *http.Request) {
			var req api.RebalanceRequest
			if !decode(w, r, &req) {
				return
			}
			c.stream(w, r, c.Rebalance)
		}),
	}
}

// post refuses every method but POST.
func post(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeAdminError(w, http.StatusMethodNotAllowed, "POST only")
			return
		}
		h(w, r)
	})
}

// decode reads a JSON request body (an empty one is the zero request).
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v)
	if err != nil && !errors.Is(err, io.EOF) {
		writeAdminError(w, http.StatusBadRequest, "request body: "+err.Error())
		return false
	}
	return true
}

// stream runs a drain or rebalance, writing each progress line as JSON and
// flushing it. Once the first line is out the status is 200; a refusal
// before it (an unknown server) is an error status.
func (c *ControllerServer) stream(w http.ResponseWriter, r *http.Request, run func(context.Context, func(api.MoveEvent)) error) {
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	started := false
	err := run(r.Context(), func(ev api.MoveEvent) {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			started = true
		}
		if err := enc.Encode(ev); err != nil {
			klog.V(2).InfoS("Progress line not written (the client left?)", "err", err)
		}
		if flusher != nil {
			flusher.Flush()
		}
	})
	if err != nil && !started {
		adminError(w, err)
	}
}

// adminError answers err with the HTTP status of its gRPC code.
func adminError(w http.ResponseWriter, err error) {
	st := status.Convert(ControllerCodes.Status(err))
	code := http.StatusInternalServerError
	switch st.Code() {
	case codes.InvalidArgument:
		code = http.StatusBadRequest
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.FailedPrecondition, codes.Aborted, codes.AlreadyExists:
		code = http.StatusConflict
	case codes.Unavailable, codes.DeadlineExceeded:
		code = http.StatusServiceUnavailable
	case codes.ResourceExhausted:
		code = http.StatusInsufficientStorage
	}
	writeAdminError(w, code, st.Message())
}

func writeAdminError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(api.AdminError{Error: msg})
}
