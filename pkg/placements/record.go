package placements

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dots-csi/dots/pkg/api"
)

// checkUpdate refuses an Update that is not one record's change, or whose
// servers are not names or repeat one another.
func checkUpdate(old, r Record) error {
	if old.Kind != r.Kind || old.ID != r.ID {
		return fmt.Errorf("%w: an update of %s %q names %s %q", api.ErrInvalid, old.Kind, old.ID, r.Kind, r.ID)
	}
	if _, err := ParseKind(string(r.Kind)); err != nil {
		return err
	}
	servers := r.Servers()
	for i, s := range servers {
		if err := api.ValidateServerName(s); err != nil {
			return err
		}
		if slices.Contains(servers[:i], s) {
			return fmt.Errorf("%w: %s %q: server %q named twice among its primary and replicas", api.ErrInvalid, r.Kind, r.ID, s)
		}
	}
	return nil
}

// plain says whether a record carries only a server: it is then written as
// before replicas existed, so an older controller still reads it.
func (r Record) plain() bool {
	return len(r.Replicas) == 0 && r.Generation == 0 && r.Interval == 0 && r.Origin == ""
}

// fileRecord is the JSON form of a record with replicas in a Dir store.
type fileRecord struct {
	Server     string   `json:"server"`
	Replicas   []string `json:"replicas,omitempty"`
	Generation uint64   `json:"generation,omitempty"`
	Interval   string   `json:"interval,omitempty"`
	Origin     string   `json:"origin,omitempty"`
}

// encodeFile is a record's file content: the server's name alone (the
// only form before replicas), or one line of JSON.
func encodeFile(r Record) string {
	if r.plain() {
		return r.Server + "\n"
	}
	fr := fileRecord{Server: r.Server, Replicas: r.Replicas, Generation: r.Generation, Origin: r.Origin}
	if r.Interval > 0 {
		fr.Interval = r.Interval.String()
	}
	b, _ := json.Marshal(fr) // strings and numbers only: cannot fail
	return string(b) + "\n"
}

// decodeFile reads either form into r's server fields.
func decodeFile(r *Record, text string) error {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, "{") {
		r.Server = text
		return nil
	}
	var fr fileRecord
	if err := json.Unmarshal([]byte(text), &fr); err != nil {
		return fmt.Errorf("placement %s %q: %w", r.Kind, r.ID, err)
	}
	r.Server, r.Replicas, r.Generation, r.Origin = fr.Server, fr.Replicas, fr.Generation, fr.Origin
	if fr.Interval != "" {
		d, err := time.ParseDuration(fr.Interval)
		if err != nil {
			return fmt.Errorf("placement %s %q: interval: %w", r.Kind, r.ID, err)
		}
		r.Interval = d
	}
	return nil
}

// Annotations of a Kubernetes record's replicas (the primary is the
// holder, as every record's server).
const (
	annotationReplicas   = "dots.csi.dev/replicas" // comma-separated
	annotationGeneration = "dots.csi.dev/generation"
	annotationInterval   = "dots.csi.dev/interval"
	annotationOrigin     = "dots.csi.dev/origin"
)

// setAnnotations writes r's replica fields into a, removing what r lacks.
func setAnnotations(a map[string]string, r Record) {
	delete(a, annotationReplicas)
	delete(a, annotationGeneration)
	delete(a, annotationInterval)
	delete(a, annotationOrigin)
	if r.Origin != "" {
		a[annotationOrigin] = r.Origin
	}
	if len(r.Replicas) > 0 {
		a[annotationReplicas] = strings.Join(r.Replicas, ",")
	}
	if r.Generation > 0 {
		a[annotationGeneration] = strconv.FormatUint(r.Generation, 10)
	}
	if r.Interval > 0 {
		a[annotationInterval] = r.Interval.String()
	}
}

// fromAnnotations reads them back; a Lease written before replicas has
// none.
func fromAnnotations(r *Record, a map[string]string) {
	if s := a[annotationReplicas]; s != "" {
		r.Replicas = strings.Split(s, ",")
	}
	r.Generation, _ = strconv.ParseUint(a[annotationGeneration], 10, 64)
	r.Interval, _ = time.ParseDuration(a[annotationInterval])
	r.Origin = a[annotationOrigin]
}
