//go:build integration

package helm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var metricRef = regexp.MustCompile(`\bdots_[a-z0-9_]+`)

// exportedMetrics are the metric names dots' Go sources define (string
// literals "dots_…"), so a dashboard or an alert naming one that does not
// exist (a typo, a rename) fails here rather than showing nothing.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(dots_[a-z0-9_]+)"`)
	names := map[string]bool{}
	err := filepath.WalkDir("../../pkg", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !names["dots_pool_health"] || !names["dots_server_up"] || !names["dots_build_info"] {
		t.Fatalf("metric names not found in the sources: %v", names)
	}
	return names
}

// checkMetrics fails for every dots_ metric in expr that dots does not
// export (histogram series named after their family).
func checkMetrics(t *testing.T, what, expr string, known map[string]bool) {
	t.Helper()
	for _, m := range metricRef.FindAllString(expr, -1) {
		base := m
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(m, suffix); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			t.Errorf("%s: %q names %s, which dots does not export", what, expr, m)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	if len(render(t).all("ConfigMap")) != 0 {
		t.Fatal("a ConfigMap is rendered by default") // the dashboard is off by default
	}
	ms := render(t, "--set", "metrics.grafanaDashboard.enabled=true",
		"--set", "metrics.grafanaDashboard.namespace=monitoring,metrics.grafanaDashboard.annotations.grafana_folder=Storage")
	cm := ms.get(t, "ConfigMap", "dots-dashboard")
	if dig(cm, "metadata", "labels", "grafana_dashboard") != "1" || dig(cm, "metadata", "namespace") != "monitoring" ||
		dig(cm, "metadata", "annotations", "grafana_folder") != "Storage" {
		t.Errorf("dashboard ConfigMap metadata: %v", cm["metadata"])
	}
	raw, _ := dig(cm, "data", "dots.json").(string)
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(raw), &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard %q (%s) has %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	known := exportedMetrics(t)
	shown := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, q := range p.Targets {
			checkMetrics(t, "panel "+p.Title, q.Expr, known)
			for _, m := range metricRef.FindAllString(q.Expr, -1) {
				shown[m] = true
			}
		}
	}
	for _, m := range []string{"dots_pool_health", "dots_pool_allocated_bytes", "dots_server_up", "dots_volume_used_bytes",
		"dots_pool_scrub_last_end_timestamp_seconds", "dots_ganesha_up", "dots_pool_stats_age_seconds"} {
		if !shown[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
	// The chart's default labels stay when the sidecar's label is changed.
	cm = render(t, "--set", "metrics.grafanaDashboard.enabled=true", "--set-json", `metrics.grafanaDashboard.labels={"dashboards":"dots"}`).
		get(t, "ConfigMap", "dots-dashboard")
	if dig(cm, "metadata", "labels", "dashboards") != "dots" || dig(cm, "metadata", "labels", "app.kubernetes.io/name") != "dots" ||
		dig(cm, "metadata", "namespace") != namespace {
		t.Errorf("custom labels: %v", cm["metadata"])
	}
}

func TestPrometheusRule(t *testing.T) {
	if len(render(t).all("PrometheusRule")) != 0 {
		t.Fatal("a PrometheusRule is rendered by default")
	}
	ms := render(t, "--set", "metrics.prometheusRule.enabled=true,metrics.prometheusRule.labels.release=prom,metrics.prometheusRule.poolAllocatedPercent=90")
	pr := ms.get(t, "PrometheusRule", "dots")
	if dig(pr, "metadata", "labels", "release") != "prom" || dig(pr, "metadata", "namespace") != namespace {
		t.Errorf("rule metadata: %v", pr["metadata"])
	}
	known := exportedMetrics(t)
	alerts := map[string]map[string]any{}
	groups, _ := dig(pr, "spec", "groups").([]any)
	for _, g := range groups {
		rules, _ := dig(g, "rules").([]any)
		for _, r := range rules {
			rule := r.(map[string]any)
			name, _ := rule["alert"].(string)
			expr, _ := rule["expr"].(string)
			alerts[name] = rule
			checkMetrics(t, "alert "+name, expr, known)
			if dig(rule, "labels", "severity") == nil || dig(rule, "annotations", "summary") == nil || dig(rule, "annotations", "description") == nil {
				t.Errorf("alert %s lacks a severity, summary or description", name)
			}
			// Prometheus expands these; Helm must have left them alone.
			if s, _ := dig(rule, "annotations", "summary").(string); !strings.Contains(s, "{{ $labels.") {
				t.Errorf("alert %s: summary %q names no label", name, s)
			}
			if strings.Contains(strings.ToLower(name+expr), "replica") || strings.Contains(strings.ToLower(name+expr), "lag") {
				t.Errorf("alert %s is about replication, which dots does not have", name)
			}
		}
	}
	for name, want := range map[string]string{
		"DotsServerDown":        "dots_server_up == 0",
		"DotsPoolAllocatedHigh": "dots_pool_allocated_bytes / dots_pool_size_bytes * 100 > 90",
		"DotsPoolDegraded":      `dots_pool_health{state="DEGRADED"} == 1`,
		"DotsPoolUnavailable":   `dots_pool_health{state!~"ONLINE|DEGRADED"} == 1`,
		"DotsPoolStatsStale":    "dots_pool_stats_age_seconds > 600",
	} {
		if r, ok := alerts[name]; !ok || r["expr"] != want {
			t.Errorf("alert %s: %v, want expr %q", name, r, want)
		}
	}
	if got := dig(alerts["DotsServerDown"], "for"); got != "5m" {
		t.Errorf("DotsServerDown for %v, want 5m", got)
	}
}

// TestOpsFlags: the server gets the scrub interval and the metrics
// settings; the controller container names its own sockets for the client.
func TestOpsFlags(t *testing.T) {
	ms := render(t)
	a := args(container(t, ms.get(t, "StatefulSet", "dots-server"), "dots"))
	wantFlag(t, "server", a, "scrub-interval", "168h")
	wantFlag(t, "server", a, "pool-stats-interval", "30s")
	wantFlag(t, "server", a, "metrics-max-volumes", "1000")
	a = args(container(t, render(t, "--set", "server.scrubInterval=0,metrics.maxVolumeSeries=50").get(t, "StatefulSet", "dots-server"), "dots"))
	wantFlag(t, "server", a, "scrub-interval", "0")
	wantFlag(t, "server", a, "metrics-max-volumes", "50")

	c := container(t, ms.get(t, "Deployment", "dots-controller"), "dots")
	env := map[string]string{}
	for _, e := range c["env"].([]any) {
		env[dig(e, "name").(string)], _ = dig(e, "value").(string)
	}
	endpoint, _ := flagValue(args(c), "endpoint")
	admin, _ := flagValue(args(c), "admin-socket")
	if env["DOTS_ENDPOINT"] != endpoint || env["DOTS_HTTP"] != "unix://"+admin || !strings.HasPrefix(endpoint, "unix://") {
		t.Errorf("controller env %v, endpoint %q, admin socket %q", env, endpoint, admin)
	}
}

func TestMonitoringValuesRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		flags []string
		want  string
	}{
		"scrub interval in words":   {[]string{"--set", "server.scrubInterval=weekly"}, "scrubInterval"},
		"no volume series":          {[]string{"--set", "metrics.maxVolumeSeries=0"}, "maxVolumeSeries"},
		"allocated over 100%":       {[]string{"--set", "metrics.prometheusRule.poolAllocatedPercent=150"}, "poolAllocatedPercent"},
		"a replica lag placeholder": {[]string{"--set", "metrics.prometheusRule.replicaLagSeconds=30"}, "replicaLagSeconds"},
		"dashboard typo":            {[]string{"--set", "metrics.grafanaDashboard.enable=true"}, "enable"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderErr(t, tc.flags...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error mentioning %q, got %v", tc.want, err)
			}
		})
	}
}
