package main

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wafplane/wafplane/processor"
)

// The console shows attack payloads all day: its script must only ever insert text. This
// keeps out every DOM API that parses a string as markup or code.
func TestConsoleScriptInsertsOnlyText(t *testing.T) {
	markup := regexp.MustCompile(`\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function\b|setTimeout\s*\(\s*["'\x60]|createContextualFragment|DOMParser|srcdoc`)
	err := fs.WalkDir(consoleFiles, "console", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(consoleFiles, path)
		if strings.HasSuffix(path, ".html") && strings.Contains(string(b), "<script>") {
			t.Errorf("%s has an inline script: the Content-Security-Policy forbids them", path)
		}
		for _, m := range markup.FindAllString(string(b), -1) {
			t.Errorf("%s uses %s: insert data with textContent", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Console pages carry a Content-Security-Policy without inline scripts; every admin answer,
// JSON with payloads included, says nosniff.
func TestConsoleHeaders(t *testing.T) {
	p, err := processor.New(processor.NewConfig(), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	consoleRoutes(mux, p, consoleInfo{Command: "processor"})
	mux.Handle("GET /events", p.EventsHandler())
	h := noSniff(mux)
	for _, path := range []string{"/", "/ui/", "/ui/app.js", "/ui/style.css", "/ui/api/overview", "/events"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d, nosniff %q", path, rec.Code, rec.Header().Get("X-Content-Type-Options"))
		}
		if csp := rec.Header().Get("Content-Security-Policy"); path != "/events" && (!strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline")) {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
	}
}
