package xds

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Ordered ADS's expected "not responding" warning is counted and logged at debug; other
// warnings stay warnings.
func TestADSDeferredWarningIsCountedNotWarned(t *testing.T) {
	var logs bytes.Buffer
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	l := cacheLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), c)
	l.Warnf("ADS mode: not responding to request %s %v: %v", "type.googleapis.com/envoy.config.cluster.v3.Cluster", []string{"a"}, "not listed")
	if testutil.ToFloat64(c) != 1 || strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "level=DEBUG") {
		t.Errorf("deferred response: counter %v, log %q", testutil.ToFloat64(c), logs.String())
	}
	logs.Reset()
	l.Warnf("something else: %d", 1)
	if !strings.Contains(logs.String(), "level=WARN") || testutil.ToFloat64(c) != 1 {
		t.Errorf("another warning: %q", logs.String())
	}
}
