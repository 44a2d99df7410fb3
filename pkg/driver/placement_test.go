package driver

import "testing"

func TestChoose(t *testing.T) {
	const g = 1 << 30
	cases := []struct {
		name  string
		cands []candidate
		size  int64
		want  int
	}{
		{"most free", []candidate{{10 * g, 0}, {20 * g, 0}}, g, 1},
		{"only one fits", []candidate{{10 * g, 0}, {5 * g, 0}}, 8 * g, 0},
		{"none fits", []candidate{{1 * g, 0}, {2 * g, 0}}, 3 * g, -1},
		{"no candidates", nil, g, -1},
		{"equally free: least provisioned", []candidate{{100 * g, 50 * g}, {100 * g, 10 * g}}, g, 1},
		{"within 5%: least provisioned", []candidate{{100 * g, 50 * g}, {96 * g, 10 * g}}, g, 1},
		{"beyond 5%: most free wins", []candidate{{100 * g, 50 * g}, {90 * g, 0}}, g, 0},
		{"near but too small for the volume", []candidate{{100 * g, 50 * g}, {96 * g, 0}}, 97 * g, 0},
		{"ties keep name order", []candidate{{10 * g, 0}, {10 * g, 0}}, g, 0},
	}
	for _, c := range cases {
		if got := choose(c.cands, c.size); got != c.want {
			t.Errorf("%s: choose = %d, want %d", c.name, got, c.want)
		}
	}
}
