package local

import (
	"flag"
	"testing"
	"time"
)

// TestPromoteAfterFlag: --promote-after reaches the config, off by
// default, and a negative one is refused.
func TestPromoteAfterFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want time.Duration
		ok   bool
	}{
		{nil, 0, true},
		{[]string{"--promote-after=30s"}, 30 * time.Second, true},
		{[]string{"--promote-after=-1s"}, -time.Second, false},
	} {
		var cfg Config
		fs := flag.NewFlagSet("local", flag.ContinueOnError)
		cfg.AddFlags(fs)
		if err := fs.Parse(append([]string{"--state-dir", t.TempDir()}, c.args...)); err != nil {
			t.Fatal(err)
		}
		err := cfg.Validate()
		if cfg.PromoteAfter != c.want || (err == nil) != c.ok {
			t.Errorf("%v: promote-after %v, err %v; want %v, ok %v", c.args, cfg.PromoteAfter, err, c.want, c.ok)
		}
		if n := len(background(cfg, nil, nil)); c.ok && n != 2+min(1, int(c.want)) {
			t.Errorf("%v: %d background loops", c.args, n)
		}
	}
}
