package xds

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wafplane/wafplane/discovery/file"
	"github.com/wafplane/wafplane/snapshot"
)

// A rejection is counted and logged once, however often the source resends the same
// state; its recovery is logged; and the server is not ready before a state the source
// could read has been published.
func TestRejectionsOnceRecoveryLoggedReadiness(t *testing.T) {
	var logs bytes.Buffer
	s := New(slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	s.Publish(nil, errors.New("gateways.yaml: does not parse"))
	if s.Ready() {
		t.Fatal("ready after a start with an unreadable file")
	}
	bad := []snapshot.Result{{Gateway: "default/demo", Err: errors.New("listeners: at least one required")}}
	for range 3 {
		s.Publish(bad, nil)
	}
	if got := testutil.ToFloat64(s.m.published.WithLabelValues("rejected")); got != 1 {
		t.Errorf("rejected = %v after the same rejection three times, want 1", got)
	}
	if n := strings.Count(logs.String(), "gateway rejected"); n != 1 {
		t.Errorf("%d rejection log lines, want 1", n)
	}
	if !s.Ready() {
		t.Error("not ready after a readable state was published")
	}
	s.Publish(snapshot.Translate(file.Default(), snapshot.Options{}), nil)
	if !strings.Contains(logs.String(), "gateway accepted again, its error is cleared") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

// Counters a dashboard alerts on exist from the start, at zero, per type.
func TestCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	for _, name := range []string{"wafplane_xds_pushes_total", "wafplane_xds_acks_total", "wafplane_xds_nacks_total", "wafplane_xds_rejected_streams_total"} {
		n, err := testutil.GatherAndCount(reg, name)
		if err != nil || n == 0 {
			t.Errorf("%s: %d series before any stream (%v)", name, n, err)
		}
	}
}

// A rule without backends is served (it answers 500) and shown as a warning, logged once.
func TestWarningsShownAndLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	s := New(slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	st := file.Default()
	st.Gateways[0].Routes[0].Rules[0].Backends = nil
	for range 2 {
		s.Publish(snapshot.Translate(st, snapshot.Options{}), nil)
	}
	gws, _ := s.Gateways()
	if len(gws) != 1 || len(gws[0].Warnings) != 1 || !strings.Contains(gws[0].Warnings[0], "no backends") || gws[0].Versions == nil {
		t.Fatalf("/snapshots: %+v", gws)
	}
	if n := strings.Count(logs.String(), "gateway served with a warning"); n != 1 {
		t.Errorf("%d warning log lines, want 1", n)
	}
}
