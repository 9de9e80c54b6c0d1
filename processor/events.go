package processor

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RuleMatch is one rule that matched, with the values libddwaf already obfuscated.
type RuleMatch struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	Type       string           `json:"type,omitempty"`
	Category   string           `json:"category,omitempty"`
	Module     string           `json:"module,omitempty"` // waf (recommended ruleset), wafplane, rasp, ...
	Parameters []MatchParameter `json:"parameters,omitempty"`
}

// MatchParameter says where a rule matched: the address, the key path and the value.
type MatchParameter struct {
	Address   string   `json:"address"`
	KeyPath   []any    `json:"key_path,omitempty"`
	Value     string   `json:"value,omitempty"`
	Highlight []string `json:"highlight,omitempty"`
}

// SecurityEvent is what the processor reports of a request that matched rules.
type SecurityEvent struct {
	Time       time.Time     `json:"time"`
	Gateway    string        `json:"gateway,omitempty"`
	Route      string        `json:"route,omitempty"`
	Mode       Mode          `json:"mode"`
	Action     string        `json:"action"` // blocked, redirected or monitored
	Status     int           `json:"status,omitempty"`
	ResponseID string        `json:"security_response_id,omitempty"`
	RequestID  string        `json:"request_id,omitempty"`
	ClientIP   string        `json:"client_ip,omitempty"`
	Method     string        `json:"method,omitempty"`
	Path       string        `json:"path,omitempty"`
	Host       string        `json:"host,omitempty"`
	Phase      string        `json:"phase"` // the last phase that matched: request, request_body or response
	Rules      []RuleMatch   `json:"rules"`
	WAFTime    time.Duration `json:"waf_time_ns"`
}

// eventsFromWAF converts libddwaf's events, which are JSON-like maps.
func eventsFromWAF(events []any) []RuleMatch {
	var out []RuleMatch
	for _, e := range events {
		m, _ := e.(map[string]any)
		rule, _ := m["rule"].(map[string]any)
		tags, _ := rule["tags"].(map[string]any)
		r := RuleMatch{ID: str(rule["id"]), Name: str(rule["name"]), Type: str(tags["type"]), Category: str(tags["category"]), Module: str(tags["module"])}
		matches, _ := m["rule_matches"].([]any)
		for _, rm := range matches {
			rmm, _ := rm.(map[string]any)
			params, _ := rmm["parameters"].([]any)
			for _, p := range params {
				pm, _ := p.(map[string]any)
				mp := MatchParameter{Address: str(pm["address"]), Value: str(pm["value"])}
				mp.KeyPath, _ = pm["key_path"].([]any)
				if hl, ok := pm["highlight"].([]any); ok {
					for _, h := range hl {
						mp.Highlight = append(mp.Highlight, str(h))
					}
				}
				redactParameter(&mp)
				r.Parameters = append(r.Parameters, mp)
			}
		}
		out = append(out, r)
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// eventRing keeps the most recent events for the admin endpoint.
type eventRing struct {
	mu     sync.Mutex
	events []SecurityEvent
	next   int
	full   bool
}

func newEventRing(size int) *eventRing {
	return &eventRing{events: make([]SecurityEvent, max(size, 1))}
}

func (r *eventRing) add(e SecurityEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[r.next] = e
	r.next = (r.next + 1) % len(r.events)
	if r.next == 0 {
		r.full = true
	}
}

// recent returns up to limit events, newest first.
func (r *eventRing) recent(limit int) []SecurityEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.events)
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	out := make([]SecurityEvent, 0, limit)
	for i := 1; i <= limit; i++ {
		out = append(out, r.events[(r.next-i+len(r.events))%len(r.events)])
	}
	return out
}

// EventsHandler serves the recent security events as JSON, newest first; ?limit=N bounds
// them, and ?rule=, ?client_ip=, ?path=, ?gateway= keep the events that match (the
// console's links from its top lists).
func (p *Processor) EventsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := 100
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				http.Error(w, "limit: want a non-negative integer", http.StatusBadRequest)
				return
			}
			limit = n
		}
		events := p.events.recent(0)
		out := make([]SecurityEvent, 0, min(limit, len(events)))
		for _, e := range events {
			if limit > 0 && len(out) == limit {
				break
			}
			if eventMatches(e, q.Get("rule"), q.Get("client_ip"), q.Get("path"), q.Get("gateway")) {
				out = append(out, e)
			}
		}
		writeJSON(w, map[string]any{"events": out})
	})
}

func eventMatches(e SecurityEvent, rule, ip, path, gateway string) bool {
	if ip != "" && e.ClientIP != ip || path != "" && e.Path != path || gateway != "" && e.Gateway != gateway {
		return false
	}
	if rule == "" {
		return true
	}
	for _, m := range e.Rules {
		if m.ID == rule {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
