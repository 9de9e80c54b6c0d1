package main

import (
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafplane/wafplane/discovery/file"
	"github.com/wafplane/wafplane/snapshot"
	"github.com/wafplane/wafplane/xds"
)

// An endpoint-only update refreshes what xds serves, but a gateway whose last translation
// failed is translated again, so its error stays on /snapshots.
func TestEndpointOnlyUpdateKeepsErrors(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	xs := xds.New(log, reg)
	loop := newTranslateLoop(xs, snapshot.Options{}, reg, log)

	good := file.Default()
	xs.Publish(loop.translate(good, false), nil)
	if r := loop.translate(good, true); r[0].Err != nil || r[0].Resources == nil {
		t.Fatalf("refresh of a good gateway: %+v", r[0])
	}

	bad := file.Default()
	bad.Gateways[0].Listeners[0].Port = 0
	xs.Publish(loop.translate(bad, false), nil)
	if r := loop.translate(bad, true); r[0].Err == nil {
		t.Fatal("an endpoint-only update hid the gateway's error behind its older resources")
	}
}
