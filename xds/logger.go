package xds

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/envoyproxy/go-control-plane/pkg/log"
)

// cacheLogger adapts slog to go-control-plane's logger. Its Info messages are per-request
// chatter (stale nonces, watches), so they go to Debug. So does the warning ordered ADS
// gives each stream whose request names a resource the new snapshot no longer has (a
// renamed cluster): it is expected, one per stream per push, nothing an operator can act
// on; deferred counts it.
func cacheLogger(l *slog.Logger, deferred prometheus.Counter) log.Logger {
	return log.LoggerFuncs{
		DebugFunc: func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
		InfoFunc:  func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
		WarnFunc: func(f string, a ...any) {
			if strings.HasPrefix(f, "ADS mode: not responding to request") {
				deferred.Inc()
				l.Debug(fmt.Sprintf(f, a...))
				return
			}
			l.Warn(fmt.Sprintf(f, a...))
		},
		ErrorFunc: func(f string, a ...any) { l.Error(fmt.Sprintf(f, a...)) },
	}
}
