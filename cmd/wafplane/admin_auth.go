package main

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// adminFlags are the admin endpoint's address and the bearer token it asks for.
type adminFlags struct {
	address, token, tokenFile string
}

func (a *adminFlags) register(env *envFlags, def, usage string) {
	env.String(&a.address, "admin-address", def, usage)
	env.String(&a.token, "admin-token", "", "bearer token the admin endpoint asks for (required when --admin-address is not loopback); health paths stay open")
	env.String(&a.tokenFile, "admin-token-file", "", "file holding the admin token (a mounted Secret), read at start")
}

// openPaths answer without a token: probes reach them.
var openPaths = map[string]bool{"/healthz": true, "/readyz": true}

// guard reads the token once and returns what puts it in front of the admin handler. An
// admin endpoint off loopback without a token is refused: it shows security events,
// configuration and profiles.
func (a *adminFlags) guard() (func(http.Handler) http.Handler, error) {
	token := a.token
	if token == "" && a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("--admin-token-file %s: empty", a.tokenFile)
		}
	}
	if token == "" {
		if !loopback(a.address) {
			return nil, fmt.Errorf("--admin-address %s is not loopback: set --admin-token or --admin-token-file (WAFPLANE_ADMIN_TOKEN), "+
				"since the admin endpoint shows security events, configuration and profiles; or keep it on 127.0.0.1", a.address)
		}
		return func(h http.Handler) http.Handler { return h }, nil
	}
	want := []byte("Bearer " + token)
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !openPaths[r.URL.Path] && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="wafplane admin"`)
				http.Error(w, "unauthorized: send Authorization: Bearer <admin token>", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}, nil
}
