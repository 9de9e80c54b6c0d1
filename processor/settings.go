package processor

import (
	"context"
	"fmt"
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
// by the stream's metadata. Metadata comes from the client (Envoy's filter configuration,
// but anyone who reaches the port can send it), so what costs the processor memory may
// only stay within the server's bound: the body limit up to Config.MaxBodyLimit.
type streamSettings struct {
	gateway, route string
	mode           Mode
	bodyLimit      int
	responseBodies bool
	problems       []metadataProblem // metadata values that were ignored or cut, for the log
}

// metadataProblem is one metadata value that was not taken as it came.
type metadataProblem struct{ key, detail string }

func (m metadataProblem) String() string { return m.key + ": " + m.detail }

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
			s.problems = append(s.problems, metadataProblem{MetadataMode, err.Error()})
		}
	}
	if v, ok := get(MetadataBodyLimit); ok {
		n, err := strconv.Atoi(v)
		switch limit := p.cfg.maxBodyLimit(); {
		case err != nil || n < 0:
			s.problems = append(s.problems, metadataProblem{MetadataBodyLimit, "want a byte count >= 0, got " + strconv.Quote(v)})
		case n > limit:
			s.bodyLimit = limit
			s.problems = append(s.problems, metadataProblem{MetadataBodyLimit, fmt.Sprintf("%d is above the processor's maximum (--max-body-limit), %d is used", n, limit)})
		default:
			s.bodyLimit = n
		}
	}
	if v, ok := get(MetadataResponseBody); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			s.responseBodies = b
		} else {
			s.problems = append(s.problems, metadataProblem{MetadataResponseBody, "want true or false, got " + strconv.Quote(v)})
		}
	}
	return s
}
