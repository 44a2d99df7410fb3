package replication

import (
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/encoding"
)

// CodecName is the gRPC content-subtype of the service's messages
// (application/grpc+dots-repl). There is no protoc on the machines dots is
// built on, so the messages are the contract's Go types (pkg/api) carried as
// JSON, and stream chunks as raw bytes: a send's data is never re-encoded.
const CodecName = "dots-repl"

// Chunk is a piece of a zfs send stream, carried as it is.
type Chunk []byte

// codec marshals *Chunk and Chunk as raw bytes and everything else as JSON.
type codec struct{}

func (codec) Name() string { return CodecName }

// Marshal hands a chunk over as it is: gRPC owns it from then on (the
// sender must not reuse it).
func (codec) Marshal(v any) ([]byte, error) {
	switch c := v.(type) {
	case Chunk:
		return c, nil
	case *Chunk:
		return *c, nil
	}
	return json.Marshal(v)
}

func (codec) Unmarshal(data []byte, v any) error {
	if c, ok := v.(*Chunk); ok {
		// gRPC may reuse data's buffer once this returns.
		*c = append((*c)[:0], data...)
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("replication message %T: %w", v, err)
	}
	return nil
}

// The server side finds a codec by the content-subtype a client sends, in
// gRPC's registry: registered once, at init, as gRPC requires.
func init() { encoding.RegisterCodec(codec{}) }
