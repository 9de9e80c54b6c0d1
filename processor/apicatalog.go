package processor

import (
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// maxCatalogEntries bounds the catalog when routes are unnamed and keyed by path.
const maxCatalogEntries = 10000

// schemaPrefix is how libddwaf's extract_schema processors name their outputs.
const schemaPrefix = "_dd.appsec.s."

// APIEndpoint is what API discovery learned of one gateway, route and method.
type APIEndpoint struct {
	Gateway  string         `json:"gateway,omitempty"`
	Route    string         `json:"route"`
	Method   string         `json:"method"`
	Request  map[string]any `json:"request,omitempty"`  // req.body, req.query, req.headers, req.cookies, req.params
	Response map[string]any `json:"response,omitempty"` // res.headers, res.body
	Samples  int            `json:"samples"`
	LastSeen time.Time      `json:"last_seen"`
}

// apiCatalog samples requests for schema extraction and keeps the schemas found.
type apiCatalog struct {
	interval time.Duration
	mu       sync.Mutex
	lastPick map[string]time.Time
	entries  map[string]*APIEndpoint
}

func newAPICatalog(interval time.Duration) *apiCatalog {
	return &apiCatalog{interval: interval, lastPick: map[string]time.Time{}, entries: map[string]*APIEndpoint{}}
}

func catalogKey(gateway, route, method string) string {
	return gateway + "\x00" + route + "\x00" + method
}

// sample says whether this request should carry schema extraction: at most one per
// interval for each gateway, route and method.
func (c *apiCatalog) sample(gateway, route, method string, now time.Time) bool {
	if c == nil || c.interval <= 0 {
		return false
	}
	key := catalogKey(gateway, route, method)
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.lastPick[key]; ok && now.Sub(last) < c.interval {
		return false
	}
	if len(c.lastPick) >= maxCatalogEntries {
		for k, t := range c.lastPick { // forget stale keys rather than grow without bound
			if now.Sub(t) >= c.interval {
				delete(c.lastPick, k)
			}
		}
		if len(c.lastPick) >= maxCatalogEntries {
			return false
		}
	}
	c.lastPick[key] = now
	return true
}

// record stores the schemas among the derivatives of a sampled request.
func (c *apiCatalog) record(gateway, route, method string, derivatives map[string]any, now time.Time) {
	key := catalogKey(gateway, route, method)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		if len(c.entries) >= maxCatalogEntries {
			return
		}
		e = &APIEndpoint{Gateway: gateway, Route: route, Method: method}
		c.entries[key] = e
	}
	e.Samples++
	e.LastSeen = now
	for name, schema := range derivatives {
		part, ok := strings.CutPrefix(name, schemaPrefix)
		if !ok {
			continue
		}
		target := &e.Request
		if strings.HasPrefix(part, "res.") {
			target = &e.Response
		}
		if *target == nil {
			*target = map[string]any{}
		}
		(*target)[part] = schema
	}
}

func (c *apiCatalog) list() []APIEndpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]APIEndpoint, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		return catalogKey(out[i].Gateway, out[i].Route, out[i].Method) < catalogKey(out[j].Gateway, out[j].Route, out[j].Method)
	})
	return out
}

// APICatalogHandler serves the API schemas learned per gateway, route and method.
func (p *Processor) APICatalogHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"endpoints": p.catalog.list()})
	})
}
