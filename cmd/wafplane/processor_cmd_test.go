package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/wafplane/wafplane/processor"
)

func parseProcessorFlags(t *testing.T, args ...string) (*processorFlags, *envFlags) {
	t.Helper()
	var f processorFlags
	env := &envFlags{fs: pflag.NewFlagSet("processor", pflag.ContinueOnError)}
	f.register(env, "0.0.0.0", 443, 80, true)
	if err := env.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &f, env
}

// Datadog's service-extensions-callout variables configure the processor unchanged.
func TestDatadogEnvironmentVariables(t *testing.T) {
	for k, v := range map[string]string{
		"DD_SERVICE_EXTENSION_HOST":               "127.0.0.1",
		"DD_SERVICE_EXTENSION_PORT":               "8443",
		"DD_SERVICE_EXTENSION_HEALTHCHECK_PORT":   "8080",
		"DD_SERVICE_EXTENSION_TLS":                "false",
		"DD_SERVICE_EXTENSION_OBSERVABILITY_MODE": "true",
		"DD_APPSEC_BODY_PARSING_SIZE_LIMIT":       "2048",
		"DD_APPSEC_WAF_TIMEOUT":                   "2500",
		"DD_APPSEC_RULES":                         "/etc/rules.json",
		"DD_APPSEC_HTTP_BLOCKED_TEMPLATE_JSON":    "/etc/b.json",
		"DD_APPSEC_HTTP_BLOCKED_TEMPLATE_HTML":    "/etc/b.html",
		"DD_TRACE_CLIENT_IP_HEADER":               "x-real-ip",
		"DD_SERVICE_EXTENSION_UDS_PATH":           "/run/extproc.sock",
	} {
		t.Setenv(k, v)
	}
	f, env := parseProcessorFlags(t)
	if len(env.errs) > 0 {
		t.Fatal(env.errs)
	}
	cfg, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "127.0.0.1:8443" || cfg.HealthAddress != "127.0.0.1:8080" || cfg.TLS || !cfg.ObservabilityMode ||
		cfg.BodyLimit != 2048 || cfg.WAFTimeout != 2500*time.Microsecond || cfg.RulesFile != "/etc/rules.json" ||
		cfg.BlockedTemplateJSON != "/etc/b.json" || cfg.BlockedTemplateHTML != "/etc/b.html" ||
		cfg.ClientIPHeader != "x-real-ip" || cfg.UnixSocket != "/run/extproc.sock" {
		t.Fatalf("config from Datadog variables: %+v", cfg)
	}
}

func TestDatadogDefaults(t *testing.T) {
	f, _ := parseProcessorFlags(t)
	cfg, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "0.0.0.0:443" || cfg.HealthAddress != "0.0.0.0:80" || !cfg.TLS || cfg.Mode != "block" {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestFlagsBeatEnvironment(t *testing.T) {
	t.Setenv("WAFPLANE_MODE", "monitor")
	t.Setenv("DD_SERVICE_EXTENSION_PORT", "9000")
	t.Setenv("WAFPLANE_PORT", "9001")
	f, _ := parseProcessorFlags(t, "--mode", "off")
	cfg, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != "off" || cfg.Address != "0.0.0.0:9001" {
		t.Fatalf("mode %s address %s", cfg.Mode, cfg.Address)
	}
}

func TestBadValuesNameTheirSource(t *testing.T) {
	t.Setenv("DD_SERVICE_EXTENSION_TLS", "maybe")
	t.Setenv("DD_APPSEC_WAF_TIMEOUT", "soon")
	_, env := parseProcessorFlags(t)
	joined := ""
	for _, e := range env.errs {
		joined += e.Error() + "\n"
	}
	if !strings.Contains(joined, "DD_SERVICE_EXTENSION_TLS") || !strings.Contains(joined, "DD_APPSEC_WAF_TIMEOUT") {
		t.Fatalf("errors: %s", joined)
	}
	f, _ := parseProcessorFlags(t, "--mode", "loud", "--trusted-cidrs", "10.0.0.0/33", "--port", "70000")
	_, err := f.config()
	for _, want := range []string{"--mode", "--trusted-cidrs", "--port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v should name %s", err, want)
		}
	}
}

// `wafplane processor --admin-address` serves what the README lists: /metrics, /events,
// /rules, /api-catalog and /healthz, which answers 200 once the ruleset is loaded; with a
// token, only to who sends it, except /healthz.
func TestProcessorAdminEndpoint(t *testing.T) {
	dir, err := os.MkdirTemp("", "wafplane") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := lis.Addr().String()
	lis.Close()
	cfg := processor.NewConfig()
	cfg.Address, cfg.UnixSocket, cfg.HealthAddress = "", filepath.Join(dir, "ext_proc.sock"), ""
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	flags := &adminFlags{address: admin, token: "s3cret-token"}
	go func() { done <- runProcessor(ctx, cfg, flags, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	token := "Bearer s3cret-token"
	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := get("/healthz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/healthz not 200 within 30s")
		}
	}
	for path, want := range map[string]string{
		"/metrics": "wafplane_processor_", "/events": "[", "/rules": `"rules_loaded"`, "/api-catalog": `"endpoints"`,
		"/debug/pprof/": "goroutine", "/": "wafplane console", "/ui/": "wafplane console", "/ui/app.js": "textContent",
		"/ui/api/overview": `"command":"processor"`, "/ui/api/traffic": `"minutes"`, "/ui/api/top": `"rules"`,
	} {
		if code, body := get(path); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want 200 with %q:\n%.300s", path, code, want, body)
		}
	}
	for _, tok := range []string{"", "Bearer wrong"} {
		token = tok
		for _, path := range []string{"/events", "/", "/ui/", "/ui/api/traffic"} { // the console included
			if code, _ := get(path); code != http.StatusUnauthorized {
				t.Errorf("%s with %q: %d, want 401", path, tok, code)
			}
		}
		if code, _ := get("/healthz"); code != http.StatusOK {
			t.Errorf("/healthz with %q: %d, want 200 (probes send no token)", tok, code)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runProcessor: %v", err)
	}
}

// An admin endpoint off loopback without a token is refused at start, naming the flags.
func TestAdminOffLoopbackNeedsAToken(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--admin-address", "0.0.0.0:0"},
		{"processor", "--admin-address", "0.0.0.0:0"},
	} {
		_, err := runCommand(t, args...)
		if err == nil || !strings.Contains(err.Error(), "--admin-token") {
			t.Errorf("%v: %v, want a refusal naming --admin-token", args, err)
		}
	}
	dir := t.TempDir()
	if _, err := (&adminFlags{address: "0.0.0.0:1", tokenFile: filepath.Join(dir, "missing")}).guard(); err == nil {
		t.Error("a missing token file was accepted")
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := (&adminFlags{address: "0.0.0.0:1", tokenFile: empty}).guard(); err == nil {
		t.Error("an empty token file was accepted")
	}
}
