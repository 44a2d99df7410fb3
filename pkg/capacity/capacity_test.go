package capacity

import (
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func roundMiB(b int64) int64 {
	const mib = 1 << 20
	return (b + mib - 1) / mib * mib
}

func TestResolve(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		name    string
		r       *csi.CapacityRange
		want    int64
		wantErr error
	}{
		{"nil range uses default", nil, gib, nil},
		{"required rounds up", &csi.CapacityRange{RequiredBytes: gib + 1}, gib + 1<<20, nil},
		{"limit only caps default", &csi.CapacityRange{LimitBytes: 100 << 20}, 100 << 20, nil},
		{"exact", &csi.CapacityRange{RequiredBytes: 10 << 20, LimitBytes: 10 << 20}, 10 << 20, nil},
		{"required over limit", &csi.CapacityRange{RequiredBytes: 2 * gib, LimitBytes: gib}, 0, ErrOutOfRange},
		{"rounding crosses limit", &csi.CapacityRange{RequiredBytes: 1, LimitBytes: 1000}, 0, ErrOutOfRange},
		{"negative", &csi.CapacityRange{RequiredBytes: -1}, 0, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Resolve(c.r, gib, roundMiB)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Resolve = %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

func TestFits(t *testing.T) {
	if !Fits(10, &csi.CapacityRange{RequiredBytes: 5}) || Fits(4, &csi.CapacityRange{RequiredBytes: 5}) ||
		Fits(11, &csi.CapacityRange{RequiredBytes: 5, LimitBytes: 10}) || !Fits(10, nil) {
		t.Fatal("Fits disagrees with the range rules")
	}
}
