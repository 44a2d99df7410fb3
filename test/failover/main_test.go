//go:build integration

package failover

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/dots-csi/dots/internal/testenv"
)

// TestMain runs the tests, or, re-executed with clientEnv, the NFS client
// process (client_test.go).
func TestMain(m *testing.M) {
	if js := os.Getenv(clientEnv); js != "" {
		var cfg clientConfig
		if err := json.Unmarshal([]byte(js), &cfg); err != nil {
			fmt.Fprintf(os.Stderr, "client: %v\n", err)
			os.Exit(2)
		}
		if err := runClient(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "client: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testenv.Main(m)
}
