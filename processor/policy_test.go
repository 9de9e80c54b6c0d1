package processor

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// eventually polls cond for up to 5 s; file watching is asynchronous by nature.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestPolicyHotReload(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.PolicyFile = writeFile(t, dir, "policy.yaml", "blocked_ips: []\n")
	r := startProcessor(t, cfg)
	visitor := httpExchange{path: "/", sourceAddress: "198.51.100.23:5555"}
	if out := r.envoy.do(t, visitor); out.blocked() {
		t.Fatal("blocked before the policy named the IP")
	}

	writeFile(t, dir, "policy.yaml", "blocked_ips:\n  - value: 198.51.100.0/24\n")
	eventually(t, "the new policy to block the IP", func() bool { return r.envoy.do(t, visitor).blocked() })

	// An expired entry blocks nothing.
	writeFile(t, dir, "policy.yaml", "blocked_ips:\n  - value: 198.51.100.23\n    expires: 2001-01-01T00:00:00Z\n")
	eventually(t, "the expired entry to unblock", func() bool { return !r.envoy.do(t, visitor).blocked() })

	// A bad edit is reported and the previous policy stays.
	writeFile(t, dir, "policy.yaml", "blocked_ips:\n  - value: 198.51.100.0/24\n")
	eventually(t, "the block to come back", func() bool { return r.envoy.do(t, visitor).blocked() })
	writeFile(t, dir, "policy.yaml", "blocked_ips:\n  - value: not-an-ip\n")
	eventually(t, "the bad policy to be reported", func() bool {
		info, _ := r.p.Rules()
		return strings.Contains(info.PolicyError, "blocked_ips[0].value")
	})
	if !r.envoy.do(t, visitor).blocked() {
		t.Fatal("a rejected policy edit dropped the previous policy")
	}
	if got := testutil.ToFloat64(r.p.metrics.policyReloads.WithLabelValues("error")); got < 1 {
		t.Fatal("rejected policy not counted")
	}
}

func TestPolicyRejectedByLibddwafKeepsPrevious(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.PolicyFile = writeFile(t, dir, "policy.yaml", "blocked_users:\n  - value: mallory\n")
	cfg.UserIDHeader = "X-User" // configured as people write it; Envoy sends it lowercase
	r := startProcessor(t, cfg)
	mallory := httpExchange{path: "/", headers: [][2]string{{"x-user", "mallory"}}}
	if !r.envoy.do(t, mallory).blocked() {
		t.Fatal("blocked user not blocked")
	}
	// Valid YAML, but a custom rule libddwaf cannot load.
	writeFile(t, dir, "policy.yaml", "custom_rules:\n  - id: broken\n    conditions: [{operator: no_such_operator}]\n")
	eventually(t, "the rejection", func() bool { info, _ := r.p.Rules(); return info.PolicyError != "" })
	if !r.envoy.do(t, mallory).blocked() {
		t.Fatal("previous policy lost after libddwaf rejected an edit")
	}
}

func TestPolicyExclusionsAndOverrides(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.PolicyFile = writeFile(t, dir, "policy.yaml", `
exclusions:
  - id: cms-editor
    paths: [/cms/edit]
  - id: trusted-scanner
    ips: [192.0.2.0/24]
  - id: rich-text
    parameters: [html]
rules:
  - id: ua0-600-12x
    enabled: false
`)
	r := startProcessor(t, cfg)
	for _, tc := range []struct {
		name    string
		x       httpExchange
		blocked bool
	}{
		{"excluded path", httpExchange{path: "/cms/edit?body=" + strings.ReplaceAll(xss, " ", "+")}, false},
		{"other path", httpExchange{path: "/cms/view?body=" + strings.ReplaceAll(xss, " ", "+")}, true},
		{"excluded ip", httpExchange{path: "/?q=" + strings.ReplaceAll(xss, " ", "+"), sourceAddress: "192.0.2.9:1"}, false},
		{"excluded parameter", httpExchange{path: "/?html=" + strings.ReplaceAll(xss, " ", "+")}, false},
		{"other parameter", httpExchange{path: "/?text=" + strings.ReplaceAll(xss, " ", "+")}, true},
		{"rule turned off", httpExchange{path: "/", headers: [][2]string{{"user-agent", "Arachni/v1.5.1"}}}, false},
		{"excluded body parameter", jsonPost(`{"html":"` + xss + `"}`), false},
		// The JSON encoder leaves out repeated values, unless something reads the body by
		// parameter, as this exclusion does: the repeat is the only occurrence inspected.
		{"repeat of an excluded body parameter", jsonPost(`{"html":"` + xss + `","text":"` + xss + `"}`), true},
	} {
		if got := r.envoy.do(t, tc.x).blocked(); got != tc.blocked {
			t.Errorf("%s: blocked=%v, want %v", tc.name, got, tc.blocked)
		}
	}
}

func jsonPost(body string) httpExchange {
	return httpExchange{method: "POST", path: "/api", headers: [][2]string{{"content-type", "application/json"}}, body: []byte(body)}
}

func TestPolicyValidationNamesTheField(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		"blocked_ips: [{value: 300.1.1.1}]":     "blocked_ips[0].value",
		"exclusions: [{id: x}]":                 "exclusions[0] (x): needs",
		"exclusions: [{id: x, paths: [nope]}]":  "exclusions[0].paths[0]",
		"rules: [{id: crs-942-100}]":            "rules[0] (crs-942-100): set enabled or block",
		"custom_rules: [{name: no-id}]":         "custom_rules[0].id",
		"unknown_key: 1":                        "unknown field",
		"blocked_users: [{value: ''}]":          "blocked_users[0].value",
		"actions: [{type: redirect_request}]":   "actions[0].id",
		"exclusions: [{id: y, ips: [1.2.3.x]}]": "exclusions[0].ips[0]",
	} {
		_, err := LoadPolicy(writeFile(t, dir, "p.yaml", content))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to mention %q", content, err, want)
		}
	}
	if _, err := LoadPolicy(dir + "/missing.yaml"); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

// The documented example policy loads and libddwaf accepts it.
func TestExamplePolicyLoads(t *testing.T) {
	pol, err := LoadPolicy("../deploy/examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEngine("")
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	if err := e.applyPolicy("example", pol.fragment(), pol.settings()); err != nil {
		t.Fatalf("libddwaf rejected the example policy: %v", err)
	}
}

// Kubernetes mounts a ConfigMap as symlinks and swaps its ..data link on update: the watch
// must react to that as to a write of the file itself.
func TestPolicyWatchSeesConfigMapSwaps(t *testing.T) {
	dir := t.TempDir()
	data1, data2 := dir+"/..2026_11_22_1", dir+"/..2026_11_22_2"
	for i, d := range []string{data1, data2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		content := "blocked_ips: []\n"
		if i == 1 {
			content = "blocked_ips: [{value: 198.51.100.9}]\n"
		}
		writeFile(t, d, "policy.yaml", content)
	}
	if err := os.Symlink(data1, dir+"/..data"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/policy.yaml", dir+"/policy.yaml"); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.PolicyFile = dir + "/policy.yaml"
	r := startProcessor(t, cfg)
	visitor := httpExchange{path: "/", sourceAddress: "198.51.100.9:1"}
	if r.envoy.do(t, visitor).blocked() {
		t.Fatal("blocked before the swap")
	}
	// The kubelet's atomic swap: a new link renamed over ..data.
	if err := os.Symlink(data2, dir+"/..data_tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+"/..data_tmp", dir+"/..data"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the swapped policy", func() bool { return r.envoy.do(t, visitor).blocked() })
}
