package processor

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestTrafficSeriesPerMinuteAndGateway(t *testing.T) {
	tr := newTraffic()
	clock := time.Date(2026, 11, 29, 12, 0, 30, 0, time.UTC)
	tr.now = func() time.Time { return clock }
	attack := []RuleMatch{{ID: "wp-932-100"}}
	tr.record("shop/edge", "allowed", nil, "198.51.100.1", "/")
	tr.record("shop/edge", "blocked", attack, "198.51.100.2", "/ping")
	tr.record("blog/www", "monitored", attack, "198.51.100.2", "/ping")
	clock = clock.Add(2 * time.Minute)
	tr.record("shop/edge", "redirected", attack, "198.51.100.3", "/login")

	all, gateways := tr.series("")
	if len(all) != trafficMinutes || !all[len(all)-1].Minute.Equal(time.Date(2026, 11, 29, 12, 2, 0, 0, time.UTC)) {
		t.Fatalf("series must end at the current minute: %d entries, last %v", len(all), all[len(all)-1].Minute)
	}
	if got, want := all[len(all)-3].Counts, (Counts{Requests: 3, Blocked: 1, Monitored: 1}); got != want {
		t.Fatalf("12:00 = %+v, want %+v", got, want)
	}
	if got, want := all[len(all)-1].Counts, (Counts{Requests: 1, Blocked: 1}); got != want {
		t.Fatalf("12:02 = %+v, want %+v", got, want)
	}
	if all[len(all)-2].Counts != (Counts{}) || len(gateways) != 2 || gateways[0] != "blog/www" {
		t.Fatalf("12:01 = %+v (want zero), gateways %v", all[len(all)-2], gateways)
	}
	shop, _ := tr.series("shop/edge")
	if got := shop[len(shop)-3].Counts; got != (Counts{Requests: 2, Blocked: 1}) {
		t.Fatalf("shop/edge at 12:00 = %+v", got)
	}

	clock = clock.Add(trafficMinutes * time.Minute) // an hour later, everything has aged out
	tr.record("shop/edge", "allowed", nil, "", "/")
	if later, _ := tr.series(""); later[len(later)-1].Requests != 1 || sum(later) != 1 {
		t.Fatalf("minutes older than an hour still counted: %+v", later)
	}
}

func sum(s []MinuteCounts) int {
	n := 0
	for _, m := range s {
		n += m.Requests
	}
	return n
}

func TestTrafficTopAndBounds(t *testing.T) {
	tr := newTraffic()
	clock := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tr.now = func() time.Time { return clock }
	for i := range 3 {
		tr.record("g", "blocked", []RuleMatch{{ID: "crs-942-100"}}, "203.0.113.9", "/search")
		if i < 2 {
			tr.record("g", "blocked", []RuleMatch{{ID: "wp-932-100"}, {ID: "crs-942-100"}}, "203.0.113.7", "/ping")
		}
	}
	clock = clock.Add(20 * time.Minute)
	tr.record("g", "blocked", []RuleMatch{{ID: "wp-941-110"}}, "203.0.113.1", "/comment")

	recent := tr.top(15, 10)
	if len(recent.Rules) != 1 || recent.Rules[0] != (Ranked{"wp-941-110", 1}) {
		t.Fatalf("last 15 minutes: %+v", recent)
	}
	hour := tr.top(60, 2)
	if len(hour.Rules) != 2 || hour.Rules[0] != (Ranked{"crs-942-100", 5}) || hour.Rules[1] != (Ranked{"wp-932-100", 2}) {
		t.Fatalf("rules over the hour: %+v", hour.Rules)
	}
	if hour.IPs[0] != (Ranked{"203.0.113.9", 3}) || hour.Paths[0] != (Ranked{"/search", 3}) {
		t.Fatalf("ips %+v paths %+v", hour.IPs, hour.Paths)
	}

	// A flood of distinct client IPs, paths and gateways stays within bounds.
	for i := range 3 * maxKeysPerMinute {
		tr.record(fmt.Sprintf("gw-%d", i), "blocked", []RuleMatch{{ID: "r"}}, fmt.Sprintf("10.0.%d.%d", i/256, i%256), fmt.Sprintf("/p/%d", i))
	}
	s := tr.ring[clock.Unix()/60%trafficMinutes]
	if len(s.ips) > maxKeysPerMinute+1 || len(s.paths) > maxKeysPerMinute+1 || len(s.gateways) > maxKeysPerMinute+1 {
		t.Fatalf("unbounded: %d ips, %d paths, %d gateways", len(s.ips), len(s.paths), len(s.gateways))
	}
	if s.ips[otherKey] == 0 || s.gateways[otherKey] == nil {
		t.Fatal("overflow not counted under " + otherKey)
	}
	long := "/" + strings.Repeat("é", 400)
	tr.ring[clock.Unix()/60%trafficMinutes] = minuteStats{} // a fresh minute
	tr.record("g", "blocked", []RuleMatch{{ID: "r"}}, "203.0.113.1", long)
	for k := range tr.ring[clock.Unix()/60%trafficMinutes].paths {
		if len(k) > maxKeyLength || !utf8.ValidString(k) {
			t.Fatalf("path key of %d bytes kept (valid UTF-8: %v)", len(k), utf8.ValidString(k))
		}
	}
}

// The console's JSON endpoints over a real processor: an attack shows in the series, the
// top lists and the filtered events; bad parameters are refused.
func TestTrafficHandlers(t *testing.T) {
	r := startProcessor(t, testConfig())
	r.envoy.do(t, httpExchange{path: "/", sourceAddress: "198.51.100.1:1"})
	attack := attacks(t)["query"]
	attack.sourceAddress = "203.0.113.9:4000"
	if !r.envoy.do(t, attack).blocked() {
		t.Fatal("attack not blocked")
	}
	rec := httptest.NewRecorder()
	r.p.TrafficHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/ui/api/traffic", nil))
	var series struct{ Minutes []MinuteCounts }
	if err := json.Unmarshal(rec.Body.Bytes(), &series); err != nil || len(series.Minutes) != trafficMinutes {
		t.Fatalf("traffic: %v %s", err, rec.Body)
	}
	if last := series.Minutes[trafficMinutes-1]; last.Requests != 2 || last.Blocked != 1 {
		t.Fatalf("this minute: %+v", last)
	}

	rec = httptest.NewRecorder()
	r.p.TopHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/ui/api/top?minutes=5&n=3", nil))
	var top Top
	if err := json.Unmarshal(rec.Body.Bytes(), &top); err != nil || len(top.Rules) == 0 || top.Minutes != 5 {
		t.Fatalf("top: %v %s", err, rec.Body)
	}
	rule := top.Rules[0].Key

	rec = httptest.NewRecorder()
	r.p.EventsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/events?rule="+rule, nil))
	var events struct{ Events []SecurityEvent }
	if err := json.Unmarshal(rec.Body.Bytes(), &events); err != nil || len(events.Events) != 1 {
		t.Fatalf("events of %s: %v %s", rule, err, rec.Body)
	}
	for query, want := range map[string]int{
		"rule=no-such-rule": 0, "client_ip=203.0.113.9": 1, "client_ip=198.51.100.1": 0,
		"path=/search": 1, "path=/": 0, "gateway=other": 0, "rule=" + rule + "&client_ip=203.0.113.9&path=/search": 1,
	} {
		rec = httptest.NewRecorder()
		r.p.EventsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/events?"+query, nil))
		events.Events = nil
		if err := json.Unmarshal(rec.Body.Bytes(), &events); err != nil || len(events.Events) != want {
			t.Errorf("events?%s: %d events, want %d: %s", query, len(events.Events), want, rec.Body)
		}
	}

	for _, bad := range []string{"/ui/api/top?minutes=0", "/ui/api/top?minutes=61", "/ui/api/top?n=x"} {
		rec = httptest.NewRecorder()
		r.p.TopHandler().ServeHTTP(rec, httptest.NewRequest("GET", bad, nil))
		if rec.Code != 400 {
			t.Errorf("%s answered %d", bad, rec.Code)
		}
	}
}
