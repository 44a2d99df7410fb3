package main

import (
	"context"
	"errors"
	"flag"

	"github.com/dots-csi/dots/pkg/client"
)

// current is the session of the running client command, for its errors'
// hints (which endpoint, which volume).
var current *session

// explainedError is an error already put in words for people.
type explainedError struct{ text string }

func (e explainedError) Error() string { return e.text }

// explained runs a client command and words its error: the gRPC code's
// name and message, and a hint where one helps (client.Explain).
func explained(kind string, run func(context.Context, []string) error) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		err := run(ctx, args)
		if err == nil || errors.Is(err, flag.ErrHelp) {
			return err
		}
		c := client.Context{Kind: kind}
		if current != nil {
			c.Endpoint = current.endpoint
			if len(current.args) > 0 {
				c.ID = current.args[0]
			}
		}
		return explainedError{client.Explain(err, c)}
	}
}
