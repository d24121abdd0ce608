package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"go.yaml.in/yaml/v3"
	"golang.org/x/oauth2"
)

// The shipped Grafana dashboard and Prometheus alert rules (README,
// "Dashboards and alerts") are only worth something if every query they
// run finds a metric the gateway exports, under the labels it has, and if
// each alert fires when it should and not otherwise. These tests check both
// against the real binary and with Prometheus's own rule evaluation.

const (
	dashboardFile  = "dashboards/tollgate.json"
	alertsFile     = "dashboards/alerts.yml"
	alertTestsFile = "dashboards/alerts_test.yml"
)

// grafanaVars are what Grafana puts in place of the dashboard's variables
// when it runs a query: a range for $__rate_interval, the "All" value of
// each template variable.
var grafanaVars = map[string]string{
	"__rate_interval": "5m",
	"__interval":      "1m",
	"__range":         "1h",
	"job":             ".*",
	"client":          ".*",
	"route":           ".*",
}

var grafanaVarRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// query is one PromQL expression of the dashboard or the alerts.
type query struct {
	where string // the panel or alert, for messages
	expr  string
}

// dashboardQueries returns every query of the dashboard: each panel
// target (also in rows) with Grafana's variables substituted, and each
// query variable's series selector.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []panel `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not a dashboard: %v", dashboardFile, err)
	}
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				qs = append(qs, query{"panel " + p.Title, substituteGrafanaVars(t, p.Title, tg.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(<selector>, <label>)", v.Name, v.Definition)
			continue
		}
		sel := substituteGrafanaVars(t, "variable "+v.Name, m[1])
		// The label the variable lists must be one of the metric's: a
		// matcher on it checks that below.
		sel = strings.TrimSuffix(sel, "}")
		if !strings.Contains(sel, "{") {
			sel += "{"
		} else {
			sel += ","
		}
		qs = append(qs, query{"variable " + v.Name, sel + m[2] + `=~".*"}`})
	}
	return qs
}

func substituteGrafanaVars(t *testing.T, where, expr string) string {
	return grafanaVarRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := grafanaVarRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		v, ok := grafanaVars[name]
		if !ok {
			t.Errorf("%s: unknown Grafana variable %s in %q", where, ref, expr)
		}
		return v
	})
}

var promqlParser = parser.NewParser(parser.Options{})

// alertRules parses the alert file as Prometheus loads it: YAML shape,
// PromQL and annotation templates are all checked.
func alertRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(filepath.Join(repoRoot, alertsFile), false, model.UTF8Validation, promqlParser, promslog.NewNopLogger())
	if len(errs) > 0 {
		t.Fatalf("%s: %v", alertsFile, errs)
	}
	var rs []rulefmt.Rule
	for _, g := range groups.Groups {
		rs = append(rs, g.Rules...)
	}
	if len(rs) == 0 {
		t.Fatalf("%s has no rules", alertsFile)
	}
	for _, r := range rs {
		for _, a := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s annotation", r.Alert, a)
			}
		}
	}
	return rs
}

// selected is a metric a query selects and the labels it matches on.
type selected struct {
	where  string
	metric string
	labels []string
}

// selections parses every query and returns what each selects.
func selections(t *testing.T, qs []query) []selected {
	t.Helper()
	var out []selected
	for _, q := range qs {
		expr, err := promqlParser.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			s := selected{where: q.where, metric: vs.Name}
			for _, m := range vs.LabelMatchers {
				if m.Name != labels.MetricName {
					s.labels = append(s.labels, m.Name)
				}
			}
			if s.metric == "" {
				t.Errorf("%s: a selector without a metric name in %q", q.where, q.expr)
				return nil
			}
			out = append(out, s)
			return nil
		})
	}
	return out
}

// scrape reads the admin endpoint's /metrics, failing on anything but a
// 200 in the Prometheus text format.
func scrape(t *testing.T, gw *gateway) map[string]*dto.MetricFamily {
	t.Helper()
	r := adminDo(t, gw, http.MethodGet, "/metrics")
	if r.status != http.StatusOK {
		t.Fatalf("scraping /metrics:\n%s", r)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return fams
}

// exported finds the family a queried name belongs to: itself, or for
// name_bucket, name_sum and name_count the histogram or summary name.
func exported(fams map[string]*dto.MetricFamily, name string) (*dto.MetricFamily, bool) {
	if f, ok := fams[name]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f, ok := fams[base]; ok && (f.GetType() == dto.MetricType_HISTOGRAM || (suffix != "_bucket" && f.GetType() == dto.MetricType_SUMMARY)) {
			return f, true
		}
	}
	return nil, false
}

// hasLabel reports whether a series of f has the label. job and instance
// are Prometheus's target labels, added at scrape time; le is a
// histogram's bucket bound.
func hasLabel(f *dto.MetricFamily, name, label string) bool {
	switch {
	case label == "job" || label == "instance":
		return true
	case label == "le" && strings.HasSuffix(name, "_bucket"):
		return true
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				return true
			}
		}
	}
	return false
}

// sample is the value of the series of f with exactly these labels.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("/metrics has no %s%v", name, want)
	return 0
}

// TestDashboardAndAlertsQueryExportedMetrics drives the partner flow end
// to end (sign-in, consent, code exchange, refresh, an API call,
// disconnect and its webhook) and then checks that every metric the
// dashboard and the alert rules query is on /metrics, with every label
// they match on.
func TestDashboardAndAlertsQueryExportedMetrics(t *testing.T) {
	queries := dashboardQueries(t)
	for _, r := range alertRules(t) {
		queries = append(queries, query{"alert " + r.Alert, r.Expr})
	}
	sels := selections(t, queries)
	if t.Failed() {
		return
	}
	forEachStoreWithReceiver(t, gatewayConfig{}, func(t *testing.T, gw *gateway, rcv *webhookReceiver) {
		b := newBrowser(t, gw)
		tok := connect(t, gw, b, "profile:read")
		next, err := refresh(t, gw.oauthConfig(oauth2.AuthStyleInParams, "profile:read"), tok.RefreshToken)
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if r := gw.call(t, "/v1/me", bearer(next.AccessToken), nil); r.status != http.StatusOK {
			t.Fatalf("API call:\n%s", r)
		}
		b.disconnect(b.connections())
		rcv.waitFor(10*time.Second, "accepted event", func(ds []delivery) bool { return len(accepted(ds)) > 0 })

		// The dispatcher counts a delivery once it has read the answer,
		// just after the receiver saw the request.
		var fams map[string]*dto.MetricFamily
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			fams = scrape(t, gw)
			if _, ok := fams["tollgate_webhook_deliveries_total"]; ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no tollgate_webhook_deliveries_total on /metrics 10s after the receiver accepted the event")
			}
		}
		// What the flow did, counted once each.
		for _, c := range []struct {
			name   string
			labels map[string]string
		}{
			{"tollgate_sign_in_attempts_total", map[string]string{"outcome": "success"}},
			{"tollgate_authorize_requests_total", map[string]string{"client": clientID, "outcome": "granted"}},
			{"tollgate_token_requests_total", map[string]string{"grant_type": "authorization_code", "client": clientID, "outcome": "ok"}},
			{"tollgate_token_requests_total", map[string]string{"grant_type": "refresh_token", "client": clientID, "outcome": "ok"}},
			{"tollgate_token_checks_total", map[string]string{"route": "me", "outcome": "ok"}},
			{"tollgate_webhook_deliveries_total", map[string]string{"client": clientID, "outcome": "delivered"}},
		} {
			if got := sample(t, fams, c.name, c.labels); got != 1 {
				t.Errorf("%s%v = %v, want 1", c.name, c.labels, got)
			}
		}

		var missing []string
		for _, s := range sels {
			f, ok := exported(fams, s.metric)
			if !ok {
				missing = append(missing, s.where+": "+s.metric)
				continue
			}
			for _, l := range s.labels {
				if !hasLabel(f, s.metric, l) {
					t.Errorf("%s matches on the label %q, which %s does not have", s.where, l, s.metric)
				}
			}
		}
		sort.Strings(missing)
		for _, m := range slices.Compact(missing) {
			t.Errorf("%s is not exported after a full partner flow", m)
		}
	})
}

// loadConfig posts the running config back to the admin endpoint's /load,
// forcing a reload although it is unchanged (Cache-Control:
// must-revalidate, as Caddy's admin API documents).
func loadConfig(t *testing.T, gw *gateway) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gw.admin+"/load", strings.NewReader(adminConfig(t, gw)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate")
	if r := send(t, req, "POST (admin) /load"); r.status != http.StatusOK {
		t.Fatalf("reloading the config:\n%s", r)
	}
}

// TestMetricsContinueAcrossConfigReloads: Caddy gives every config a new
// metrics registry; Tollgate's counters must go on from where they were,
// on the admin endpoint's /metrics, through two reloads.
func TestMetricsContinueAcrossConfigReloads(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, "profile:read")
		const calls = 3
		for range calls {
			if r := gw.call(t, "/v1/me", bearer(tok.AccessToken), nil); r.status != http.StatusOK {
				t.Fatalf("API call:\n%s", r)
			}
		}
		ok := map[string]string{"route": "me", "outcome": "ok"}
		issued := map[string]string{"grant_type": "authorization_code", "client": clientID, "outcome": "ok"}
		// A check is timed as authenticate when it waited for the store,
		// as authenticate_local when the store decided it in process.
		authenticated := func(fams map[string]*dto.MetricFamily) float64 {
			return sample(t, fams, "tollgate_store_operation_duration_seconds", map[string]string{"operation": "authenticate"}) +
				sample(t, fams, "tollgate_store_operation_duration_seconds", map[string]string{"operation": "authenticate_local"})
		}
		fams := scrape(t, gw)
		checks, stored, tokens := sample(t, fams, "tollgate_token_checks_total", ok),
			authenticated(fams),
			sample(t, fams, "tollgate_token_requests_total", issued)
		if checks != calls || stored < calls || tokens != 1 {
			t.Fatalf("before reloading: %v token checks, %v authenticate calls, %v tokens issued; want %d, at least %d, 1", checks, stored, tokens, calls, calls)
		}
		reloaded := sample(t, fams, "caddy_config_last_reload_success_timestamp_seconds", map[string]string{})

		for i := 1; i <= 2; i++ {
			loadConfig(t, gw)
			fams = scrape(t, gw)
			at := sample(t, fams, "caddy_config_last_reload_success_timestamp_seconds", map[string]string{})
			if at <= reloaded {
				t.Fatalf("reload %d: Caddy's last reload time is still %v: the config was not reloaded", i, at)
			}
			reloaded = at
			if got := sample(t, fams, "tollgate_token_checks_total", ok); got != checks {
				t.Errorf("reload %d: %v token checks, want %v carried on", i, got, checks)
			}
			if got := sample(t, fams, "tollgate_token_requests_total", issued); got != tokens {
				t.Errorf("reload %d: %v tokens issued, want %v carried on", i, got, tokens)
			}
			if got := authenticated(fams); got < stored {
				t.Errorf("reload %d: %v authenticate calls timed, want at least %v", i, got, stored)
			}
		}
		if r := gw.call(t, "/v1/me", bearer(tok.AccessToken), nil); r.status != http.StatusOK {
			t.Fatalf("API call after the reloads:\n%s", r)
		}
		if got := sample(t, scrape(t, gw), "tollgate_token_checks_total", ok); got != checks+1 {
			t.Errorf("after the reloads and one more call: %v token checks, want %v", got, checks+1)
		}
	})
}

// alertTests is the part of promtool's rule unit-test format
// (https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/)
// that alerts_test.yml uses. Unknown fields fail the test rather than
// being skipped, so that the file cannot hold a case nobody runs.
type alertTests struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval"`
	Tests              []struct {
		Name        string         `yaml:"name"`
		Interval    model.Duration `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTests []struct {
			EvalTime  model.Duration `yaml:"eval_time"`
			Alertname string         `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestAlertRules runs dashboards/alerts_test.yml as `promtool test rules`
// does: the input series are loaded, the rule groups evaluated at every
// evaluation interval from 0 to the last eval_time, and at each eval_time
// the firing alerts (labels and expanded annotations) must be exactly the
// expected ones. It also checks that every alert has a case where it fires
// and one where it does not.
func TestAlertRules(t *testing.T) {
	alertRules(t) // the file parses, every alert has its annotations
	raw, err := os.ReadFile(filepath.Join(repoRoot, alertTestsFile))
	if err != nil {
		t.Fatal(err)
	}
	var file alertTests
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("%s: %v", alertTestsFile, err)
	}
	if len(file.RuleFiles) != 1 || file.RuleFiles[0] != filepath.Base(alertsFile) {
		t.Fatalf("%s: rule_files %q, want [%s]", alertTestsFile, file.RuleFiles, filepath.Base(alertsFile))
	}
	evalInterval := time.Duration(file.EvaluationInterval)
	if evalInterval == 0 {
		evalInterval = time.Minute
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tg := range file.Tests {
		t.Run(tg.Name, func(t *testing.T) {
			interval := time.Duration(tg.Interval)
			if interval == 0 {
				interval = evalInterval
			}
			var load strings.Builder
			fmt.Fprintf(&load, "load %s\n", model.Duration(interval))
			for _, s := range tg.InputSeries {
				fmt.Fprintf(&load, "  %s %s\n", s.Series, s.Values)
			}
			suite, err := promqltest.NewLazyLoader(load.String(), promqltest.LazyLoaderOpts{})
			if err != nil {
				t.Fatalf("input_series: %v", err)
			}
			defer suite.Close()
			suite.SubqueryInterval = evalInterval
			m := rules.NewManager(&rules.ManagerOptions{
				QueryFunc:  rules.EngineQueryFunc(suite.QueryEngine(), suite.Storage()),
				Appendable: suite.Storage(),
				Context:    context.Background(),
				NotifyFunc: func(context.Context, string, ...*rules.Alert) {},
				Logger:     promslog.NewNopLogger(),
			})
			groups, errs := m.LoadGroups(evalInterval, labels.EmptyLabels(), "", nil, false, filepath.Join(repoRoot, alertsFile))
			if len(errs) > 0 {
				t.Fatalf("loading %s: %v", alertsFile, errs)
			}
			names := make([]string, 0, len(groups))
			for name, g := range groups {
				names = append(names, name)
				for _, r := range g.Rules() {
					if ar, ok := r.(*rules.AlertingRule); ok {
						ar.SetRestored(true)
					}
				}
			}
			sort.Strings(names)

			cases := tg.AlertRuleTests
			sort.SliceStable(cases, func(i, j int) bool { return cases[i].EvalTime < cases[j].EvalTime })
			start := time.Unix(0, 0).UTC()
			next := 0
			for ts := start; next < len(cases); ts = ts.Add(evalInterval) {
				suite.WithSamplesTill(ts, func(err error) {
					if err != nil {
						t.Fatal(err)
					}
					for _, name := range names {
						g := groups[name]
						g.Eval(suite.Context(), ts)
						for _, r := range g.Rules() {
							if err := r.LastError(); err != nil {
								t.Fatalf("rule %s at %s: %v", r.Name(), ts.Sub(start), err)
							}
						}
					}
				})
				// As promtool: an eval_time between two evaluations is
				// checked against the earlier one.
				for ; next < len(cases) && time.Duration(cases[next].EvalTime) < ts.Add(evalInterval).Sub(start); next++ {
					c := cases[next]
					var got []string
					found := false
					for _, name := range names {
						for _, r := range groups[name].Rules() {
							ar, ok := r.(*rules.AlertingRule)
							if !ok || ar.Name() != c.Alertname {
								continue
							}
							found = true
							for _, a := range ar.ActiveAlerts() {
								if a.State == rules.StateFiring {
									got = append(got, a.Labels.String()+" "+a.Annotations.String())
								}
							}
						}
					}
					if !found {
						t.Fatalf("eval_time %s: no alert %s in %s", c.EvalTime, c.Alertname, alertsFile)
					}
					var want []string
					for _, e := range c.ExpAlerts {
						l := map[string]string{labels.AlertName: c.Alertname}
						for k, v := range e.ExpLabels {
							l[k] = v
						}
						want = append(want, labels.FromMap(l).String()+" "+labels.FromMap(e.ExpAnnotations).String())
					}
					sort.Strings(got)
					sort.Strings(want)
					if !slices.Equal(got, want) {
						t.Errorf("%s at %s: firing\n\t%s\nwant\n\t%s", c.Alertname, c.EvalTime, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
					}
					if len(want) > 0 {
						fires[c.Alertname] = true
					} else {
						quiet[c.Alertname] = true
					}
				}
			}
		})
	}
	for _, r := range alertRules(t) {
		if !fires[r.Alert] || !quiet[r.Alert] {
			t.Errorf("%s: alert %s needs a case where it fires and one where it does not (fires: %v, stays quiet: %v)", alertTestsFile, r.Alert, fires[r.Alert], quiet[r.Alert])
		}
	}
}
