package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/registry"
)

// AdminError is a request the controller's admin socket refused: its HTTP
// status and the controller's message (api.AdminError).
type AdminError struct {
	Path    string
	Status  int
	Message string
}

func (e *AdminError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Path, http.StatusText(e.Status), e.Message)
}

// admin sends one request to the controller's admin socket; a status other
// than 2xx is an *AdminError. The caller closes the body.
func (c *Client) admin(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if c.adminAddr == "" {
		return nil, fmt.Errorf("%s needs the controller's admin socket (--http unix:///PATH, its --admin-socket)", path)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	base, hc := adminHTTP(c.adminAddr)
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var ae api.AdminError
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &ae) == nil && ae.Error != "" {
			msg = ae.Error
		}
		return nil, &AdminError{Path: path, Status: resp.StatusCode, Message: msg}
	}
	return resp, nil
}

// Servers lists the storage servers with their capacity, from the
// controller's /servers on its admin socket, which probes each server
// first unless it answered within the last seconds.
func (c *Client) Servers(ctx context.Context) ([]registry.ServerView, error) {
	resp, err := c.admin(ctx, http.MethodGet, "/servers", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []registry.ServerView
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// OrphanedPools lists the servers' pool claims left without a pod by a
// scale-down (api.OrphanedPool); none from a controller that does not
// look for them.
func (c *Client) OrphanedPools(ctx context.Context) ([]api.OrphanedPool, error) {
	resp, err := c.admin(ctx, http.MethodGet, api.AdminPathOrphans, nil)
	var ae *AdminError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return []api.OrphanedPool{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := []api.OrphanedPool{}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// Promote makes another copy of a replicated volume its primary (to: that
// server; "": the replica holding the newest state).
func (c *Client) Promote(ctx context.Context, volume, to string) (api.PromoteVolumeResult, error) {
	var out api.PromoteVolumeResult
	resp, err := c.admin(ctx, http.MethodPost, api.AdminPathPromote, api.PromoteVolumeRequest{Volume: volume, To: to})
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// Drain moves every volume off server, calling progress with each line as
// the controller sends it; it returns the last (MoveDone) line.
func (c *Client) Drain(ctx context.Context, server string, progress func(api.MoveEvent) error) (api.MoveEvent, error) {
	return c.moves(ctx, api.AdminPathDrain, api.DrainRequest{Server: server}, progress)
}

// Rebalance moves volumes from the fullest servers to the emptiest, like
// Drain.
func (c *Client) Rebalance(ctx context.Context, progress func(api.MoveEvent) error) (api.MoveEvent, error) {
	return c.moves(ctx, api.AdminPathRebalance, api.RebalanceRequest{}, progress)
}

// ErrMovesCut is a drain or rebalance whose stream ended without its
// final line: the controller stopped (or the timeout passed); what was
// reported moved did move.
var ErrMovesCut = errors.New("the controller's progress ended before its final line")

func (c *Client) moves(ctx context.Context, path string, req any, progress func(api.MoveEvent) error) (api.MoveEvent, error) {
	resp, err := c.admin(ctx, http.MethodPost, path, req)
	if err != nil {
		return api.MoveEvent{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var ev api.MoveEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return api.MoveEvent{}, fmt.Errorf("%s: a progress line is not JSON: %w", path, err)
		}
		if err := progress(ev); err != nil {
			return ev, err
		}
		if ev.Kind == api.MoveDone {
			return ev, nil
		}
	}
	if err := sc.Err(); err != nil {
		return api.MoveEvent{}, fmt.Errorf("%w: %w", ErrMovesCut, err)
	}
	return api.MoveEvent{}, ErrMovesCut
}
