package processor

import (
	"context"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakeEnvoy drives the processor as Envoy's ext_proc filter does: lowercase header keys,
// values in raw_value, pseudo-headers, source.address in the attributes, protocol_config
// on the first message, mode_override honoured, response phase after the request.
type fakeEnvoy struct {
	client extprocv3.ExternalProcessorClient
}

// httpExchange is one request and the upstream response Envoy would get for it.
type httpExchange struct {
	method, path, authority string
	headers                 [][2]string
	body                    []byte
	sourceAddress           string
	routeName               string // the xds.route_name attribute (Envoy Gateway sends it)
	metadata                map[string]string

	// The filter's configured body modes (NONE unless set) and Envoy's buffer limit.
	requestBodyMode  extprocfilterv3.ProcessingMode_BodySendMode
	responseBodyMode extprocfilterv3.ProcessingMode_BodySendMode
	bufferLimit      int
	chunkSize        int

	status       int
	respHeaders  [][2]string
	respBody     []byte
	respTrailers bool
}

// outcome is what Envoy did with the exchange.
type outcome struct {
	immediate       *extprocv3.ImmediateResponse
	blockedAt       string // phase of the immediate response
	bodySentToProc  int    // bytes of request body the processor saw
	overrides       []*extprocfilterv3.ProcessingMode
	upstreamReached bool // Envoy let the request go upstream (no block before the response)

	// lastAnswer is when the last answer Envoy waits for arrived: the HTTP request goes on
	// from there, while the stream's end is exchanged in the background.
	lastAnswer time.Time
}

func header(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }

func (x httpExchange) requestHeaderMap() *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	method, authority := x.method, x.authority
	if method == "" {
		method = "GET"
	}
	if authority == "" {
		authority = "shop.example"
	}
	hm.Headers = append(hm.Headers, header(":method", method), header(":path", x.path),
		header(":authority", authority), header(":scheme", "http"))
	for _, h := range x.headers {
		hm.Headers = append(hm.Headers, header(h[0], h[1]))
	}
	return hm
}

func (e *fakeEnvoy) do(t testing.TB, x httpExchange) outcome {
	t.Helper()
	out, err := e.exchange(x)
	if err != nil {
		t.Fatalf("ext_proc exchange %s %s: %v", x.method, x.path, err)
	}
	return out
}

func (e *fakeEnvoy) exchange(x httpExchange) (outcome, error) {
	var out outcome
	ctx := context.Background()
	if len(x.metadata) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.New(x.metadata))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := e.client.Process(ctx)
	if err != nil {
		return out, err
	}
	mode := &extprocfilterv3.ProcessingMode{
		RequestHeaderMode: extprocfilterv3.ProcessingMode_SEND, ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
		RequestBodyMode: x.requestBodyMode, ResponseBodyMode: x.responseBodyMode,
	}
	// call sends one message and reads its answer; a mismatched answer is a protocol error.
	call := func(phase string, msg *extprocv3.ProcessingRequest) (bool, error) {
		if err := stream.Send(msg); err != nil {
			return false, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return false, err
		}
		out.lastAnswer = time.Now()
		if ir := resp.GetImmediateResponse(); ir != nil {
			// Envoy ends the stream after an immediate response; waiting for the server's
			// end also means its report of the request is complete.
			out.immediate, out.blockedAt = ir, phase
			return true, closeStream(stream)
		}
		if !answers(phase, resp) {
			return false, errors.New("answer " + resp.String() + " does not match " + phase)
		}
		if mo := resp.GetModeOverride(); mo != nil && (phase == "request_headers" || phase == "response_headers") {
			out.overrides = append(out.overrides, mo)
			mode = mo
		}
		return false, nil
	}
	first := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: x.requestHeaderMap(), EndOfStream: len(x.body) == 0}},
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: x.requestBodyMode, ResponseBodyMode: x.responseBodyMode},
	}
	if x.sourceAddress != "" || x.routeName != "" {
		fields := map[string]*structpb.Value{}
		if x.sourceAddress != "" {
			fields["source.address"] = structpb.NewStringValue(x.sourceAddress)
		}
		if x.routeName != "" {
			fields["xds.route_name"] = structpb.NewStringValue(x.routeName)
		}
		first.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: fields}}
	}
	if done, err := call("request_headers", first); done || err != nil {
		return out, err
	}
	if len(x.body) > 0 {
		if done, err := e.sendBody(call, "request_body", x.body, mode.RequestBodyMode, x, &out.bodySentToProc); done || err != nil {
			return out, err
		}
	}
	out.upstreamReached = true
	if mode.ResponseHeaderMode == extprocfilterv3.ProcessingMode_SKIP {
		return out, closeStream(stream)
	}
	status := x.status
	if status == 0 {
		status = 200
	}
	rh := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{header(":status", strconv.Itoa(status))}}
	for _, h := range x.respHeaders {
		rh.Headers = append(rh.Headers, header(h[0], h[1]))
	}
	if done, err := call("response_headers", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: rh, EndOfStream: len(x.respBody) == 0}}}); done || err != nil {
		return out, err
	}
	if len(x.respBody) > 0 {
		var seen int
		if done, err := e.sendBody(call, "response_body", x.respBody, mode.ResponseBodyMode, x, &seen); done || err != nil {
			return out, err
		}
	}
	return out, closeStream(stream)
}

// sendBody sends a body as Envoy would in the given mode; NONE sends nothing.
func (e *fakeEnvoy) sendBody(call func(string, *extprocv3.ProcessingRequest) (bool, error), phase string, body []byte,
	mode extprocfilterv3.ProcessingMode_BodySendMode, x httpExchange, seen *int) (bool, error) {
	msg := func(b []byte, end bool) *extprocv3.ProcessingRequest {
		hb := &extprocv3.HttpBody{Body: b, EndOfStream: end}
		if phase == "request_body" {
			return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: hb}}
		}
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: hb}}
	}
	limit := x.bufferLimit
	if limit == 0 {
		limit = 1 << 20
	}
	switch mode {
	case extprocfilterv3.ProcessingMode_BUFFERED, extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL:
		part := body[:min(len(body), limit)]
		*seen += len(part)
		return call(phase, msg(part, len(part) == len(body)))
	case extprocfilterv3.ProcessingMode_STREAMED:
		size := x.chunkSize
		if size == 0 {
			size = 16 << 10
		}
		for start := 0; start < len(body); start += size {
			end := min(len(body), start+size)
			*seen += end - start
			if done, err := call(phase, msg(body[start:end], end == len(body))); done || err != nil {
				return done, err
			}
		}
	}
	return false, nil
}

func answers(phase string, r *extprocv3.ProcessingResponse) bool {
	switch phase {
	case "request_headers":
		return r.GetRequestHeaders() != nil
	case "request_body":
		return r.GetRequestBody() != nil
	case "response_headers":
		return r.GetResponseHeaders() != nil
	case "response_body":
		return r.GetResponseBody() != nil
	}
	return false
}

// closeStream half-closes as Envoy does at the end of a request and waits for the server's end.
func closeStream(s grpc.BidiStreamingClient[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	if err := s.CloseSend(); err != nil {
		return err
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		return errors.New("stream did not end cleanly: " + errString(err))
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return "an extra message"
	}
	return err.Error()
}

func (o outcome) blocked() bool { return o.immediate != nil }

func (o outcome) status() int {
	if o.immediate == nil {
		return 0
	}
	return int(o.immediate.GetStatus().GetCode())
}

func (o outcome) header(key string) string {
	for _, h := range o.immediate.GetHeaders().GetSetHeaders() {
		if h.GetHeader().GetKey() == key {
			return headerValue(h.GetHeader())
		}
	}
	return ""
}
