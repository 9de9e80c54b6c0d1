package processor

import (
	"errors"
	"io"
	"mime"
	"strings"
	"time"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/DataDog/go-libddwaf/v4/waferrors"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Process serves one ext_proc stream, that is one HTTP request and its response.
func (p *Processor) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	release, err := p.admit(srv.Context())
	if err != nil {
		return err
	}
	defer release()
	s := p.newStream(srv)
	defer s.finish()
	if p.cfg.PeerGateway != nil {
		g, err := p.peerGateway(srv.Context(), s.settings.gateway)
		if err != nil {
			p.metrics.errors.WithLabelValues("unauthorized").Inc()
			s.verdict = "error"
			return err
		}
		s.settings.gateway = g
	}
	msgs := p.receive(srv)
	var idle *time.Timer
	var idleC <-chan time.Time
	if p.cfg.StreamIdleTimeout > 0 {
		idle = time.NewTimer(p.cfg.StreamIdleTimeout)
		defer idle.Stop()
		idleC = idle.C
	}
	for {
		var r received
		select {
		case r = <-msgs:
		case <-srv.Context().Done():
			return nil // Envoy went away; finish frees the WAF context
		case <-idleC:
			// Returning ends the stream; finish frees its WAF context.
			p.metrics.idleClosed.Inc()
			return status.Errorf(codes.DeadlineExceeded, "no ext_proc message for %s", p.cfg.StreamIdleTimeout)
		}
		msg, err := r.msg, r.err
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		if idle != nil {
			idle.Reset(p.cfg.StreamIdleTimeout)
		}
		resp, done, err := s.handle(msg)
		if err != nil {
			p.metrics.errors.WithLabelValues("protocol").Inc()
			s.verdict = "error"
			return err
		}
		if resp != nil && !s.observing {
			if err := srv.Send(resp); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

type received struct {
	msg *extprocv3.ProcessingRequest
	err error
}

// receive reads the stream's messages on a goroutine of its own, so that the stream can
// be closed when it stays silent; the goroutine ends with the stream.
func (p *Processor) receive(srv extprocv3.ExternalProcessor_ProcessServer) <-chan received {
	msgs := make(chan received, 1)
	go func() {
		for {
			msg, err := srv.Recv()
			select {
			case msgs <- received{msg, err}:
			case <-srv.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return msgs
}

// stream is the state of one request through its phases.
type stream struct {
	p        *Processor
	settings streamSettings
	start    time.Time

	wafCtx       *waf.Context
	bodyKeyPaths bool // the context's configuration reads bodies by key path
	wafTime      time.Duration
	timedOut     bool
	sampled      bool
	derived      map[string]any

	observing bool // Envoy runs the filter in observability mode: it ignores answers, nothing can block

	req      *request
	clientIP string
	userID   string
	seen     map[string]bool // phases already received, to refuse repeats

	configuredReqBody  extprocfilterv3.ProcessingMode_BodySendMode
	configuredRespBody extprocfilterv3.ProcessingMode_BodySendMode
	overrodeReqBody    bool
	reqBody            bodyBuffer
	respBody           bodyBuffer
	inspectRespBody    bool

	matches []RuleMatch
	phase   string
	verdict string // allowed, blocked, redirected, monitored, off, error
	action  verdict
}

func (p *Processor) newStream(srv extprocv3.ExternalProcessor_ProcessServer) *stream {
	p.metrics.activeStreams.Inc()
	s := &stream{p: p, settings: p.settingsFor(srv.Context()), start: time.Now(), seen: map[string]bool{}, verdict: "allowed"}
	for _, pr := range s.settings.problems {
		p.metrics.metadataIgnored.WithLabelValues(pr.key).Inc()
	}
	if len(s.settings.problems) > 0 {
		// Any client can send metadata: the log gets a sample, the counter every one.
		p.metadataLog.Do(func() { p.log.Warn("ext_proc stream metadata not taken as sent", "problems", s.settings.problems) })
	}
	if s.settings.mode == ModeOff {
		s.verdict = "off"
	}
	return s
}

// bodyBuffer accumulates a body up to the limit.
type bodyBuffer struct {
	data      []byte
	truncated bool
	evaluated bool
}

func (b *bodyBuffer) add(chunk []byte, limit int) {
	room := limit - len(b.data)
	if len(chunk) > room {
		chunk = chunk[:max(room, 0)]
		b.truncated = true
	}
	b.data = append(b.data, chunk...)
}

func (b *bodyBuffer) full(limit int) bool { return len(b.data) >= limit }

func protocolError(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// handle answers one message. done means the stream is over (an immediate response was sent).
func (s *stream) handle(msg *extprocv3.ProcessingRequest) (resp *extprocv3.ProcessingResponse, done bool, err error) {
	s.observing = s.observing || msg.GetObservabilityMode() || s.p.cfg.ObservabilityMode
	if pc := msg.GetProtocolConfig(); pc != nil {
		s.configuredReqBody, s.configuredRespBody = pc.GetRequestBodyMode(), pc.GetResponseBodyMode()
	}
	phase := phaseOf(msg)
	if phase == "" {
		return nil, false, protocolError("ProcessingRequest without request_headers, response_headers, bodies or trailers")
	}
	if (phase == "request_headers" || phase == "response_headers" || strings.HasSuffix(phase, "trailers")) && s.seen[phase] {
		return nil, false, protocolError("%s received twice on one stream", phase)
	}
	s.seen[phase] = true
	switch r := msg.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return s.requestHeaders(msg, r.RequestHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		return s.requestBody(r.RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		if ir := s.evaluateRequestBody(); ir != nil {
			return ir, true, nil
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}, false, nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return s.responseHeaders(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return s.responseBody(r.ResponseBody)
	default: // response trailers
		if ir := s.evaluateResponseBody(); ir != nil {
			return ir, true, nil
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}, false, nil
	}
}

func phaseOf(msg *extprocv3.ProcessingRequest) string {
	switch msg.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingRequest_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingRequest_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return "response_trailers"
	}
	return ""
}

func continueHeaders(request bool) *extprocv3.ProcessingResponse {
	hr := &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: hr}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: hr}}
}

func continueBody(request bool) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: br}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}}
}

func (s *stream) requestHeaders(msg *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, bool, error) {
	s.req = parseRequestHeaders(h.GetHeaders())
	s.req.hasBody = !h.GetEndOfStream()
	resp := continueHeaders(true)
	if s.settings.mode == ModeOff {
		// Nothing more to see: ask Envoy to skip the response phase too.
		resp.ModeOverride = &extprocfilterv3.ProcessingMode{RequestHeaderMode: extprocfilterv3.ProcessingMode_SKIP,
			ResponseHeaderMode: extprocfilterv3.ProcessingMode_SKIP}
		return resp, false, nil
	}
	s.clientIP = s.p.clientIP.resolve(msg.GetAttributes(), s.req.headers)
	if s.settings.route == "" {
		s.settings.route = routeName(msg.GetAttributes())
	}
	if hdr := s.p.cfg.UserIDHeader; hdr != "" {
		if v := s.req.headers[hdr]; len(v) > 0 {
			s.userID = v[0]
		}
	}
	addrs := s.req.addresses(s.clientIP, s.userID)
	if s.p.catalog.sample(s.settings.gateway, s.catalogRoute(), s.req.method, s.start) {
		s.sampled = true
		addrs[addrProcessor] = map[string]any{"extract-schema": true}
	}
	if ir := s.run(addrs, "request"); ir != nil {
		return ir, true, nil
	}
	// Ask Envoy for the body, held until the verdict, when the filter is not configured to send it.
	if s.req.hasBody && s.settings.bodyLimit > 0 && s.configuredReqBody == extprocfilterv3.ProcessingMode_NONE {
		s.overrodeReqBody = true
		resp.ModeOverride = &extprocfilterv3.ProcessingMode{
			RequestHeaderMode:  extprocfilterv3.ProcessingMode_SEND,
			ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
			RequestBodyMode:    extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL,
			ResponseBodyMode:   s.configuredRespBody,
		}
	}
	return resp, false, nil
}

// catalogRoute names the route for API discovery: the control plane's route name, else the path.
func (s *stream) catalogRoute() string {
	if s.settings.route != "" {
		return s.settings.route
	}
	return s.req.shownPath
}

func (s *stream) requestBody(b *extprocv3.HttpBody) (*extprocv3.ProcessingResponse, bool, error) {
	limit := s.settings.bodyLimit
	if s.settings.mode == ModeOff || limit == 0 || s.reqBody.evaluated {
		return continueBody(true), false, nil
	}
	s.reqBody.add(b.GetBody(), limit)
	// BUFFERED and BUFFERED_PARTIAL send the body in one message; STREAMED sends chunks,
	// decided at the end of the stream or when the limit is reached.
	whole := s.overrodeReqBody || s.configuredReqBody == extprocfilterv3.ProcessingMode_BUFFERED ||
		s.configuredReqBody == extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL
	if whole || b.GetEndOfStream() || s.reqBody.full(limit) {
		if ir := s.evaluateRequestBody(); ir != nil {
			return ir, true, nil
		}
	}
	return continueBody(true), false, nil
}

// evaluateRequestBody runs the WAF on the request body collected so far, once.
func (s *stream) evaluateRequestBody() *extprocv3.ProcessingResponse {
	if s.reqBody.evaluated || len(s.reqBody.data) == 0 || s.settings.mode == ModeOff {
		return nil
	}
	s.reqBody.evaluated = true
	if s.reqBody.truncated {
		s.p.metrics.truncations.WithLabelValues("body_limit").Inc()
	}
	if !s.openContext() { // before parsing: its configuration decides keepRepeats
		return nil
	}
	contentType := ""
	if s.req != nil {
		contentType = s.req.contentType
	}
	body := parseBody(contentType, s.reqBody.data, s.keepRepeats())
	return s.run(body.addresses(), "request_body")
}

func (s *stream) responseHeaders(h *extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, bool, error) {
	resp := continueHeaders(false)
	if s.settings.mode == ModeOff {
		return resp, false, nil
	}
	// A body that never ended (trailers or a reset) is still judged before the response goes on.
	if ir := s.evaluateRequestBody(); ir != nil {
		return ir, true, nil
	}
	status, headers, contentType := parseResponseHeaders(h.GetHeaders())
	addrs := map[string]any{addrResponseHeaders: headers}
	if status != "" {
		addrs[addrResponseStatus] = status
	}
	if ir := s.run(addrs, "response"); ir != nil {
		return ir, true, nil
	}
	if s.settings.responseBodies && s.settings.bodyLimit > 0 && !h.GetEndOfStream() && isJSON(contentType) {
		s.inspectRespBody = true
		if s.configuredRespBody == extprocfilterv3.ProcessingMode_NONE {
			resp.ModeOverride = &extprocfilterv3.ProcessingMode{
				ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
				ResponseBodyMode:   extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL,
			}
		}
	}
	return resp, false, nil
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func (s *stream) responseBody(b *extprocv3.HttpBody) (*extprocv3.ProcessingResponse, bool, error) {
	limit := s.settings.bodyLimit
	if !s.inspectRespBody || s.respBody.evaluated {
		return continueBody(false), false, nil
	}
	s.respBody.add(b.GetBody(), limit)
	if b.GetEndOfStream() || s.respBody.full(limit) || s.configuredRespBody != extprocfilterv3.ProcessingMode_STREAMED {
		if ir := s.evaluateResponseBody(); ir != nil {
			return ir, true, nil
		}
	}
	return continueBody(false), false, nil
}

func (s *stream) evaluateResponseBody() *extprocv3.ProcessingResponse {
	if !s.inspectRespBody || s.respBody.evaluated || len(s.respBody.data) == 0 {
		return nil
	}
	s.respBody.evaluated = true
	if !s.openContext() {
		return nil
	}
	body := jsonBody{doc: s.respBody.data, keepRepeats: s.keepRepeats()}
	if !body.valid() {
		return nil
	}
	return s.run(map[string]any{addrResponseBody: body}, "response_body")
}

// keepRepeats tells the JSON encoder to give the WAF every repeated value: API discovery
// samples this request, or the configuration of its WAF context reads bodies by key path.
func (s *stream) keepRepeats() bool { return s.sampled || s.bodyKeyPaths }

// openContext opens the stream's WAF context on the first run, and reports whether there is one.
func (s *stream) openContext() bool {
	if s.wafCtx != nil {
		return true
	}
	e := s.p.engine.Load()
	if e == nil {
		s.p.metrics.errors.WithLabelValues("not_ready").Inc()
		return false
	}
	ctx, keyPaths, err := e.acquire(s.p.cfg.WAFTimeout)
	if err != nil {
		s.p.metrics.errors.WithLabelValues("waf_context").Inc()
		s.p.log.Error("WAF context", "error", err)
		return false
	}
	s.p.openContexts.Add(1)
	s.wafCtx, s.bodyKeyPaths = ctx, keyPaths
	return true
}

// run evaluates addresses and returns the immediate response when the request must be
// blocked or redirected. Errors and timeouts let the request through and are counted.
func (s *stream) run(addrs map[string]any, phase string) *extprocv3.ProcessingResponse {
	if len(addrs) == 0 || !s.openContext() {
		return nil
	}
	res, err := s.wafCtx.Run(waf.RunAddressData{Persistent: addrs, TimerKey: timerKey})
	for _, d := range res.TimerStats {
		s.wafTime += d
	}
	switch {
	case errors.Is(err, waferrors.ErrTimeout):
		s.timedOut = true
	case err != nil:
		s.p.metrics.errors.WithLabelValues("waf_run").Inc()
		s.p.log.Warn("WAF run", "phase", phase, "error", err)
	}
	if res.HasEvents() {
		s.matches = append(s.matches, eventsFromWAF(res.Events)...)
		s.phase = phase
	}
	if s.sampled && res.HasDerivatives() {
		if s.derived == nil {
			s.derived = map[string]any{}
		}
		for k, v := range res.Derivatives {
			s.derived[k] = v
		}
	}
	v := verdictFromActions(res.Actions)
	if !v.block && !v.redirect {
		return nil
	}
	if s.settings.mode != ModeBlock || s.observing {
		s.verdict = "monitored"
		return nil
	}
	s.action = v
	s.verdict = "blocked"
	if v.redirect {
		s.verdict = "redirected"
	}
	return s.p.templates.immediateResponse(v, s.req)
}

// finish releases the WAF context and reports the request; it runs on every path out of Process.
func (s *stream) finish() {
	p := s.p
	p.metrics.activeStreams.Dec()
	if s.wafCtx != nil {
		for reason, sizes := range s.wafCtx.Truncations() {
			p.metrics.truncations.WithLabelValues(reason.String()).Add(float64(len(sizes)))
		}
		s.wafCtx.Close()
		p.openContexts.Add(-1)
		p.metrics.wafDuration.Observe(s.wafTime.Seconds())
	}
	if s.timedOut {
		p.metrics.timeouts.Inc()
	}
	if s.verdict == "allowed" && len(s.matches) > 0 {
		s.verdict = "monitored"
	}
	p.metrics.requests.WithLabelValues(p.metrics.gatewayLabel(s.settings.gateway), s.verdict).Inc()
	var path string
	if s.req != nil {
		path = s.req.shownPath
	}
	p.traffic.record(s.settings.gateway, s.verdict, s.matches, s.clientIP, path)
	if s.sampled && s.req != nil && len(s.derived) > 0 {
		p.catalog.record(s.settings.gateway, s.catalogRoute(), s.req.method, s.derived, time.Now())
	}
	if len(s.matches) > 0 {
		s.report()
	}
}

func (s *stream) report() {
	e := SecurityEvent{
		Time: s.start.UTC(), Gateway: s.settings.gateway, Route: s.settings.route, Mode: s.settings.mode,
		Action: s.verdict, ClientIP: s.clientIP, Phase: s.phase, Rules: s.matches, WAFTime: s.wafTime,
	}
	if s.verdict == "blocked" || s.verdict == "redirected" {
		e.Status, e.ResponseID = s.action.status, s.action.responseID
	}
	if s.req != nil {
		e.Method, e.Path, e.Host, e.RequestID = s.req.method, s.req.shownPath, s.req.authority, s.req.requestID
	}
	ids := make([]string, 0, len(s.matches))
	names := make([]string, 0, len(s.matches))
	categories := make([]string, 0, len(s.matches))
	for _, m := range s.matches {
		s.p.metrics.ruleHits.WithLabelValues(m.ID, m.Module).Inc()
		ids, names, categories = append(ids, m.ID), append(names, m.Name), append(categories, m.Type)
	}
	s.p.events.add(e)
	s.p.log.Warn("security event",
		"action", e.Action, "rules", ids, "rule_names", names, "categories", categories,
		"client_ip", e.ClientIP, "method", e.Method, "path", e.Path, "host", e.Host,
		"gateway", e.Gateway, "route", e.Route, "mode", e.Mode, "phase", e.Phase,
		"request_id", e.RequestID, "security_response_id", e.ResponseID, "waf_time", e.WAFTime,
		"matches", e.Rules)
}
