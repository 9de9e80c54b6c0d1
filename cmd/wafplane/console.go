package main

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/wafplane/wafplane/processor"
)

// The web console: static files embedded in the binary that read the admin endpoint's JSON.
// It lives on the admin address, so it is loopback by default and behind --admin-token
// otherwise, like every admin path.
//
//go:embed console
var consoleFiles embed.FS

// consoleInfo tells the console what the command serves, so it shows only what exists.
type consoleInfo struct {
	Command string `json:"command"` // serve or processor
	Source  string `json:"source"`  // where serve's gateways come from
	Version string `json:"version"`
}

// consoleRoutes adds the console at / and /ui/, and the JSON only it needs.
func consoleRoutes(mux *http.ServeMux, p *processor.Processor, info consoleInfo) {
	files, _ := fs.Sub(consoleFiles, "console")
	static := http.StripPrefix("/ui/", http.FileServerFS(files))
	mux.Handle("GET /ui/", consoleHeaders(static))
	mux.Handle("GET /{$}", consoleHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "index.html")
	})))
	mux.Handle("GET /ui/api/overview", consoleHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, info)
	})))
	mux.Handle("GET /ui/api/traffic", consoleHeaders(p.TrafficHandler()))
	mux.Handle("GET /ui/api/top", consoleHeaders(p.TopHandler()))
}

// consoleHeaders: scripts only from this origin and no inline script, so that even a payload
// that slipped into the page as markup could not run; nothing is cached or framed.
func consoleHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
