package xds

import (
	"log/slog"
	"sync"

	"golang.org/x/time/rate"
)

// logLimiter keeps what clients can make the server log within a bound: a burst of ten
// lines, then one a second, each saying how many it stood for. Counters count them all.
type logLimiter struct {
	log        *slog.Logger
	limit      *rate.Limiter
	mu         sync.Mutex
	suppressed int
}

func newLogLimiter(log *slog.Logger) *logLimiter {
	return &logLimiter{log: log, limit: rate.NewLimiter(1, 10)}
}

func (l *logLimiter) warn(msg string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.limit.Allow() {
		l.suppressed++
		return
	}
	if l.suppressed > 0 {
		args = append(args, "suppressed_since_last", l.suppressed)
		l.suppressed = 0
	}
	l.log.Warn(msg, args...)
}
