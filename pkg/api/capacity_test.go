package api

import (
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func TestResolveCapacity(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		name    string
		r       *csi.CapacityRange
		want    int64
		wantErr error
	}{
		{"nil range uses default", nil, gib, nil},
		{"exact bytes", &csi.CapacityRange{RequiredBytes: gib + 1}, gib + 1, nil},
		{"exact range", &csi.CapacityRange{RequiredBytes: gib + 1, LimitBytes: gib + 1}, gib + 1, nil},
		{"below the minimum", &csi.CapacityRange{RequiredBytes: 1}, MinCapacity, nil},
		{"limit below the minimum", &csi.CapacityRange{LimitBytes: MinCapacity - 1}, 0, ErrOutOfRange},
		{"limit only caps default", &csi.CapacityRange{LimitBytes: 100 << 20}, 100 << 20, nil},
		{"exact", &csi.CapacityRange{RequiredBytes: 10 << 20, LimitBytes: 10 << 20}, 10 << 20, nil},
		{"required over limit", &csi.CapacityRange{RequiredBytes: 2 * gib, LimitBytes: gib}, 0, ErrOutOfRange},
		{"minimum crosses limit", &csi.CapacityRange{RequiredBytes: 1, LimitBytes: 1000}, 0, ErrOutOfRange},
		{"negative", &csi.CapacityRange{RequiredBytes: -1}, 0, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ResolveCapacity(c.r, gib)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ResolveCapacity = %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

func TestCapacityFits(t *testing.T) {
	if !CapacityFits(10, &csi.CapacityRange{RequiredBytes: 5}) || CapacityFits(4, &csi.CapacityRange{RequiredBytes: 5}) ||
		CapacityFits(11, &csi.CapacityRange{RequiredBytes: 5, LimitBytes: 10}) || !CapacityFits(10, nil) {
		t.Fatal("CapacityFits disagrees with the range rules")
	}
}
