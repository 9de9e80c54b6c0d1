package processor

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The console's time series and top lists: a ring of the last hour's minutes, each with
// per-gateway counts and, for requests that matched rules, counts by rule, client IP and
// path. Memory is bounded whatever the traffic: keys are cut to maxKeyLength, and past
// maxKeysPerMinute distinct keys in a minute, further ones are counted under otherKey.
const (
	trafficMinutes   = 60
	maxKeysPerMinute = 500
	maxKeyLength     = 200 // a longer path is counted under its first 200 bytes
	otherKey         = "(other)"
)

// Counts are one minute's requests, blocked (or redirected) and monitored (matched, let
// through).
type Counts struct {
	Requests  int `json:"requests"`
	Blocked   int `json:"blocked"`
	Monitored int `json:"monitored"`
}

type minuteStats struct {
	minute   int64 // Unix minute this slot holds
	gateways map[string]*Counts
	rules    map[string]int
	ips      map[string]int
	paths    map[string]int
}

type traffic struct {
	mu   sync.Mutex
	ring [trafficMinutes]minuteStats
	now  func() time.Time
}

func newTraffic() *traffic { return &traffic{now: time.Now} }

// slot returns the minute's stats, emptied when it last held an older minute. Callers hold mu.
func (t *traffic) slot(minute int64) *minuteStats {
	s := &t.ring[minute%trafficMinutes]
	if s.minute != minute {
		*s = minuteStats{minute: minute, gateways: map[string]*Counts{}, rules: map[string]int{}, ips: map[string]int{}, paths: map[string]int{}}
	}
	return s
}

func bump(m map[string]int, key string) {
	if len(key) > maxKeyLength {
		key = strings.ToValidUTF8(key[:maxKeyLength], "")
	}
	if _, ok := m[key]; !ok && len(m) >= maxKeysPerMinute {
		key = otherKey
	}
	m[key]++
}

// record counts one finished request.
func (t *traffic) record(gateway, verdict string, matches []RuleMatch, clientIP, path string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.slot(t.now().Unix() / 60)
	c := s.gateways[gateway]
	if c == nil {
		if len(s.gateways) >= maxKeysPerMinute {
			gateway = otherKey
			c = s.gateways[gateway]
		}
		if c == nil {
			c = &Counts{}
			s.gateways[gateway] = c
		}
	}
	c.Requests++
	switch verdict {
	case "blocked", "redirected":
		c.Blocked++
	case "monitored":
		c.Monitored++
	}
	if len(matches) == 0 {
		return
	}
	for _, m := range matches {
		bump(s.rules, m.ID)
	}
	bump(s.ips, clientIP)
	bump(s.paths, path)
}

// MinuteCounts is one minute of the series; Minute is its start.
type MinuteCounts struct {
	Minute time.Time `json:"minute"`
	Counts
}

// series gives the last hour minute by minute, oldest first, for one gateway or ("") all.
func (t *traffic) series(gateway string) ([]MinuteCounts, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now().Unix() / 60
	out := make([]MinuteCounts, trafficMinutes)
	seen := map[string]bool{}
	for i := range out {
		minute := now - trafficMinutes + 1 + int64(i)
		out[i].Minute = time.Unix(minute*60, 0).UTC()
		s := &t.ring[minute%trafficMinutes]
		if s.minute != minute {
			continue
		}
		for g, c := range s.gateways {
			seen[g] = true
			if gateway == "" || g == gateway {
				out[i].Requests += c.Requests
				out[i].Blocked += c.Blocked
				out[i].Monitored += c.Monitored
			}
		}
	}
	gateways := make([]string, 0, len(seen))
	for g := range seen {
		gateways = append(gateways, g)
	}
	sort.Strings(gateways)
	return out, gateways
}

// Ranked is one entry of a top list.
type Ranked struct {
	Key   string `json:"key"`
	Count int    `json:"count"`
}

// Top is the most frequent rules, client IPs and paths of matched requests.
type Top struct {
	Minutes int      `json:"minutes"`
	Rules   []Ranked `json:"rules"`
	IPs     []Ranked `json:"client_ips"`
	Paths   []Ranked `json:"paths"`
}

// top ranks the last minutes (1 to 60) of matched requests, n entries per list.
func (t *traffic) top(minutes, n int) Top {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now().Unix() / 60
	rules, ips, paths := map[string]int{}, map[string]int{}, map[string]int{}
	for minute := now - int64(minutes) + 1; minute <= now; minute++ {
		s := &t.ring[minute%trafficMinutes]
		if s.minute != minute {
			continue
		}
		addCounts(rules, s.rules)
		addCounts(ips, s.ips)
		addCounts(paths, s.paths)
	}
	return Top{Minutes: minutes, Rules: rank(rules, n), IPs: rank(ips, n), Paths: rank(paths, n)}
}

func addCounts(dst, src map[string]int) {
	for k, v := range src {
		dst[k] += v
	}
}

func rank(m map[string]int, n int) []Ranked {
	out := make([]Ranked, 0, len(m))
	for k, v := range m {
		out = append(out, Ranked{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Count > out[j].Count || out[i].Count == out[j].Count && out[i].Key < out[j].Key
	})
	return out[:min(n, len(out))]
}

// TrafficHandler serves the last hour per minute: ?gateway= narrows it to one gateway.
func (p *Processor) TrafficHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		series, gateways := p.traffic.series(r.URL.Query().Get("gateway"))
		writeJSON(w, map[string]any{"minutes": series, "gateways": gateways})
	})
}

// TopHandler serves the top rules, client IPs and paths of matched requests over the last
// ?minutes= (1–60, default 15), ?n= entries each (1–100, default 10).
func (p *Processor) TopHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		minutes, ok1 := queryInt(r, "minutes", 15, 1, trafficMinutes)
		n, ok2 := queryInt(r, "n", 10, 1, 100)
		if !ok1 || !ok2 {
			http.Error(w, "minutes: 1 to 60, n: 1 to 100", http.StatusBadRequest)
			return
		}
		writeJSON(w, p.traffic.top(minutes, n))
	})
}

func queryInt(r *http.Request, name string, def, lo, hi int) (int, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	v, err := strconv.Atoi(s)
	return v, err == nil && v >= lo && v <= hi
}
