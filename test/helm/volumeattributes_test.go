//go:build integration

package helm

import (
	"slices"
	"strings"
	"testing"
)

// vacValues are two classes, one with a boolean thick.
var vacValues = []string{"--set-json", `volumeAttributesClasses=[{"name":"dots-gzip","parameters":{"compression":"gzip","recordsize":"16K"}},{"name":"dots-reserved","parameters":{"thick":true}}]`}

// TestVolumeAttributesClasses: the classes and the resizer's feature gate
// follow the VolumeAttributesClass API csi-resizer v1.14 watches
// (storage.k8s.io/v1beta1), unless volumeAttributes.enabled forces them;
// the classes are storage.k8s.io/v1 where that is served; the schema
// refuses parameters dots cannot change.
func TestVolumeAttributesClasses(t *testing.T) {
	beta := []string{"--api-versions", "storage.k8s.io/v1beta1/VolumeAttributesClass"}
	both := append(slices.Clone(beta), "--api-versions", "storage.k8s.io/v1/VolumeAttributesClass")
	for _, tc := range []struct {
		name    string
		flags   []string
		want    bool
		version string
	}{
		{"no API", nil, false, ""},
		{"only v1 served (csi-resizer v1.14 cannot watch it)", []string{"--api-versions", "storage.k8s.io/v1/VolumeAttributesClass"}, false, ""},
		{"v1beta1 served", beta, true, "storage.k8s.io/v1beta1"},
		{"v1 and v1beta1 served", both, true, "storage.k8s.io/v1"},
		{"forced on without the API", []string{"--set", "volumeAttributes.enabled=true"}, true, "storage.k8s.io/v1beta1"},
		{"forced off with the API", append([]string{"--set", "volumeAttributes.enabled=false"}, both...), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := render(t, append(slices.Clone(vacValues), tc.flags...)...)
			classes := ms.all("VolumeAttributesClass")
			args := toStrings(container(t, ms.get(t, "Deployment", "dots-controller"), "csi-resizer")["args"])
			gate := slices.Contains(args, "--feature-gates=VolumeAttributesClass=true")
			if gate != tc.want || (len(classes) == 2) != tc.want || (!tc.want && len(classes) != 0) {
				t.Fatalf("%d classes, resizer gate %v; want classes and gate: %v", len(classes), gate, tc.want)
			}
			if !tc.want {
				return
			}
			byName := map[string]obj{}
			for _, c := range classes {
				byName[c.name()] = c
				if c["apiVersion"] != tc.version || c["driverName"] != "dots.csi.dev" {
					t.Errorf("class %s: apiVersion %v driverName %v, want %s dots.csi.dev", c.name(), c["apiVersion"], c["driverName"], tc.version)
				}
			}
			if p := dig(byName["dots-gzip"], "parameters"); dig(p, "compression") != "gzip" || dig(p, "recordsize") != "16K" {
				t.Errorf("dots-gzip parameters %v", p)
			}
			if th := dig(byName["dots-reserved"], "parameters", "thick"); th != "true" {
				t.Errorf("dots-reserved thick = %#v, want the string \"true\"", th)
			}
		})
	}
	for what, set := range map[string]string{
		"placement key":  `volumeAttributesClasses=[{"name":"move","parameters":{"server":"dots-server-1"}}]`,
		"creation-time":  `volumeAttributesClasses=[{"name":"own","parameters":{"uid":"1000"}}]`,
		"misspelled key": `volumeAttributesClasses=[{"name":"typo","parameters":{"compresion":"gzip"}}]`,
		"no parameters":  `volumeAttributesClasses=[{"name":"empty"}]`,
	} {
		if _, err := renderErr(t, "--set-json", set); err == nil || !strings.Contains(err.Error(), "volumeAttributesClasses") {
			t.Errorf("%s: %v, want a schema error", what, err)
		}
	}
}
