package xds

import (
	"encoding/json"
	"net/http"
)

// NodesHandler serves /nodes: every Envoy, its gateway, per type the versions sent and
// ACKed, and the last NACK with its error text.
func (s *Server) NodesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"nodes": s.Nodes()})
	})
}

// SnapshotsHandler serves /snapshots: every gateway with its versions and last error, and
// the source's last read error.
func (s *Server) SnapshotsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gws, se := s.Gateways()
		writeJSON(w, http.StatusOK, map[string]any{"gateways": gws, "sourceError": se})
	})
}

// SnapshotHandler serves /snapshots/{namespace}/{name}: the gateway's last good resources
// as a config dump, and its last error.
func (s *Server) SnapshotHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("namespace") + "/" + r.PathValue("name")
		res, err := s.Resources(key)
		if res == nil && err == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no gateway " + key})
			return
		}
		out := map[string]any{"gateway": key}
		if err != nil {
			out["error"] = err.Error()
		}
		if res != nil {
			d, derr := res.Dump()
			if derr != nil {
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": derr.Error()})
				return
			}
			out["snapshot"] = d
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
