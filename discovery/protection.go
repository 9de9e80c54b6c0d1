package discovery

import "time"

// Defaults of protection. Fail open by default: a WAF outage must not take the site down;
// set failOpen: false where blocking everything is better than passing an attack.
const (
	DefaultMode             = ModeBlock
	DefaultFailOpen         = true
	DefaultMessageTimeout   = 200 * time.Millisecond
	DefaultRequestBodyLimit = 1 << 20
)

// Effective is a protection with every field resolved.
type Effective struct {
	Mode             string
	FailOpen         bool
	MessageTimeout   time.Duration
	RequestBodyLimit int64
	ResponseBody     bool
}

// Resolve applies the gateway's protection, then the route's override (nil for none), to
// the defaults.
func Resolve(gateway Protection, route *Protection) Effective {
	e := Effective{Mode: DefaultMode, FailOpen: DefaultFailOpen, MessageTimeout: DefaultMessageTimeout,
		RequestBodyLimit: DefaultRequestBodyLimit}
	e.apply(gateway)
	if route != nil {
		e.apply(*route)
	}
	return e
}

func (e *Effective) apply(p Protection) {
	if p.Mode != "" {
		e.Mode = p.Mode
	}
	if p.FailOpen != nil {
		e.FailOpen = *p.FailOpen
	}
	if p.MessageTimeout != 0 {
		e.MessageTimeout = time.Duration(p.MessageTimeout)
	}
	if p.RequestBodyLimit != nil {
		e.RequestBodyLimit = *p.RequestBodyLimit
	}
	if p.ResponseBody != nil {
		e.ResponseBody = *p.ResponseBody
	}
}

// Protected reports whether the WAF runs for some of the gateway's traffic: its own mode,
// or a route's override, is not off. Envoys of an unprotected gateway get no ext_proc filter.
func (g *Gateway) Protected() bool {
	if Resolve(g.Protection, nil).Mode != ModeOff {
		return true
	}
	for _, r := range g.Routes {
		if Resolve(g.Protection, r.Protection).Mode != ModeOff {
			return true
		}
	}
	return false
}
