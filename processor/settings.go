package processor

import (
	"context"
	"strconv"

	"google.golang.org/grpc/metadata"
)

// Keys of the gRPC initial metadata the control plane puts on the ext_proc filter
// (grpc_service.initial_metadata). They are the contract documented in doc.go.
const (
	MetadataGateway      = "x-wafplane-gateway"
	MetadataRoute        = "x-wafplane-route"
	MetadataMode         = "x-wafplane-mode"
	MetadataBodyLimit    = "x-wafplane-body-limit"
	MetadataResponseBody = "x-wafplane-response-body"
)

// streamSettings are the per-stream settings: the configuration's defaults, overridden
// by the stream's metadata.
type streamSettings struct {
	gateway, route string
	mode           Mode
	bodyLimit      int
	responseBodies bool
	problems       []string // metadata values that were ignored, for the log
}

func (p *Processor) settingsFor(ctx context.Context) streamSettings {
	s := streamSettings{mode: p.cfg.Mode, bodyLimit: p.cfg.BodyLimit, responseBodies: p.cfg.ResponseBodies}
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(key string) (string, bool) {
		if v := md.Get(key); len(v) > 0 {
			return v[0], true
		}
		return "", false
	}
	s.gateway = p.cfg.Gateway
	if v, ok := get(MetadataGateway); ok {
		s.gateway = v
	}
	s.route, _ = get(MetadataRoute)
	if v, ok := get(MetadataMode); ok {
		if m, err := ParseMode(v); err == nil {
			s.mode = m
		} else {
			s.problems = append(s.problems, MetadataMode+": "+err.Error())
		}
	}
	if v, ok := get(MetadataBodyLimit); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			s.bodyLimit = n
		} else {
			s.problems = append(s.problems, MetadataBodyLimit+": want a byte count >= 0, got "+strconv.Quote(v))
		}
	}
	if v, ok := get(MetadataResponseBody); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			s.responseBodies = b
		} else {
			s.problems = append(s.problems, MetadataResponseBody+": want true or false, got "+strconv.Quote(v))
		}
	}
	return s
}
