package processor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func reqHeaders(hm *corev3.HeaderMap, end bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: end}}}
}

func respHeaders(hm *corev3.HeaderMap) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: true}}}
}

func reqBody(b []byte, end bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: end}}}
}

func hmap(kv ...string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, header(kv[i], kv[i+1]))
	}
	return hm
}

// sendRaw sends messages one by one and collects answers until the stream ends or errs.
// Every answer must be a valid ext_proc answer; an error must be a clean gRPC status.
func sendRaw(t *testing.T, r *running, msgs ...*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	t.Helper()
	stream, err := r.envoy.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var answers []*extprocv3.ProcessingResponse
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the stream; Recv below tells why
		}
		resp, err := stream.Recv()
		if err != nil {
			return answers, err
		}
		if resp.Response == nil {
			t.Fatalf("answer without a response case: %v", resp)
		}
		answers = append(answers, resp)
		if resp.GetImmediateResponse() != nil {
			break
		}
	}
	stream.CloseSend()
	_, err = stream.Recv()
	return answers, err
}

func TestMalformedInputNeverCrashes(t *testing.T) {
	r := startProcessor(t, testConfig())
	deepJSON := strings.Repeat("[", 10000) + `"` + sqli + `"` + strings.Repeat("]", 10000)
	manyHeaders := hmap(":method", "GET", ":path", "/", ":authority", "a")
	for i := range 1000 {
		manyHeaders.Headers = append(manyHeaders.Headers, header(fmt.Sprintf("x-h-%d", i), "v"))
	}
	hugeValue := hmap(":method", "GET", ":path", "/", "x-big", strings.Repeat("A", 64<<10)+xss)
	mpType, mpBody := multipartBody(t, "comment", xss, "a.txt")
	for _, tc := range []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
		// wantErr is the gRPC code of a refused stream; OK means every message was answered.
		wantErr codes.Code
		blocked bool
	}{
		{name: "response headers before request headers", msgs: []*extprocv3.ProcessingRequest{respHeaders(hmap(":status", "200"))}},
		{name: "missing pseudo-headers", msgs: []*extprocv3.ProcessingRequest{reqHeaders(hmap("user-agent", "x"), true), respHeaders(hmap())}},
		{name: "repeated request headers", msgs: []*extprocv3.ProcessingRequest{reqHeaders(hmap(":path", "/"), true), reqHeaders(hmap(":path", "/"), true)},
			wantErr: codes.InvalidArgument},
		{name: "repeated response headers", msgs: []*extprocv3.ProcessingRequest{respHeaders(hmap()), respHeaders(hmap())}, wantErr: codes.InvalidArgument},
		{name: "empty message", msgs: []*extprocv3.ProcessingRequest{{}}, wantErr: codes.InvalidArgument},
		{name: "body without headers", msgs: []*extprocv3.ProcessingRequest{reqBody([]byte(`{"q":"`+sqli+`"}`), true)}, blocked: true},
		{name: "invalid percent-encoding and UTF-8", msgs: []*extprocv3.ProcessingRequest{
			reqHeaders(hmap(":method", "GET", ":path", "/%zz/\xff\xfe?a=%&b=%G1&\xc3\x28=1", "cookie", "a=%;\xff"), true), respHeaders(hmap(":status", "200"))},
			blocked: true}, // wp-920-130: invalid percent-encoding is refused, cleanly
		{name: "1000 headers", msgs: []*extprocv3.ProcessingRequest{reqHeaders(manyHeaders, true)}},
		{name: "64 KiB header value", msgs: []*extprocv3.ProcessingRequest{reqHeaders(hugeValue, true)}},
		{name: "JSON nested 10000 deep", msgs: []*extprocv3.ProcessingRequest{
			reqHeaders(hmap(":method", "POST", ":path", "/", "content-type", "application/json"), false),
			reqBody([]byte(deepJSON), true)}},
		{name: "truncated multipart", msgs: []*extprocv3.ProcessingRequest{
			reqHeaders(hmap(":method", "POST", ":path", "/", "content-type", mpType), false),
			reqBody(mpBody[:len(mpBody)/2], true)}, blocked: true},
		{name: "multipart without boundary", msgs: []*extprocv3.ProcessingRequest{
			reqHeaders(hmap(":method", "POST", ":path", "/", "content-type", "multipart/form-data"), false),
			reqBody(mpBody, true)}, blocked: true}, // inspected as text
		{name: "broken XML", msgs: []*extprocv3.ProcessingRequest{
			reqHeaders(hmap(":method", "POST", ":path", "/", "content-type", "text/xml"), false),
			reqBody([]byte("<a><b attr='"+xss+"'><c>"+strings.Repeat("<d>", 5000)), true)}, blocked: true},
		{name: "body after the stream was judged", msgs: []*extprocv3.ProcessingRequest{
			reqHeaders(hmap(":method", "POST", ":path", "/"), false), reqBody([]byte("a"), true), reqBody([]byte("b"), true)}},
		{name: "trailers only", msgs: []*extprocv3.ProcessingRequest{
			{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}},
			{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}}}},
		{name: "headers with value instead of raw_value", msgs: []*extprocv3.ProcessingRequest{reqHeaders(&corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/?q=" + strings.ReplaceAll(xss, " ", "+")}}}, true)}, blocked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers, err := sendRaw(t, r, tc.msgs...)
			if tc.wantErr != codes.OK {
				if status.Code(err) != tc.wantErr {
					t.Fatalf("want a clean %s stream error, got %v", tc.wantErr, err)
				}
				return
			}
			if !errors.Is(err, io.EOF) {
				t.Fatalf("stream did not end cleanly: %v", err)
			}
			blocked := len(answers) > 0 && answers[len(answers)-1].GetImmediateResponse() != nil
			if blocked != tc.blocked {
				t.Fatalf("blocked = %v, want %v (answers %d of %d)", blocked, tc.blocked, len(answers), len(tc.msgs))
			}
			if !blocked && len(answers) != len(tc.msgs) {
				t.Fatalf("%d answers for %d messages", len(answers), len(tc.msgs))
			}
		})
	}
}

func TestClientCancelClosesContext(t *testing.T) {
	r := startProcessor(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	openPOST(t, r.envoy.client, ctx)
	if r.p.OpenContexts() != 1 {
		t.Fatalf("open contexts mid-request = %d, want 1", r.p.OpenContexts())
	}
	cancel() // Envoy resets the request
	eventually(t, "the context to close after cancel", func() bool { return r.p.OpenContexts() == 0 })
}

// In observability mode Envoy expects no answers: the processor inspects, reports and stays silent.
func TestObservabilityModeNeverAnswers(t *testing.T) {
	r := startProcessor(t, testConfig())
	stream, err := r.envoy.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msg := reqHeaders(hmap(":method", "GET", ":path", "/?q="+strings.ReplaceAll(xss, " ", "+")), true)
	msg.ObservabilityMode = true
	if err := stream.Send(msg); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("want no answer and a clean end, got %v, %v", resp, err)
	}
	if ev := r.p.events.recent(1); len(ev) != 1 || ev[0].Action != "monitored" {
		t.Fatalf("events = %+v", ev)
	}
}

// openPOST starts a request whose body is still to come and waits for the headers' answer.
func openPOST(t *testing.T, client extprocv3.ExternalProcessorClient, ctx context.Context) extprocv3.ExternalProcessor_ProcessClient {
	t.Helper()
	stream, err := client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(reqHeaders(hmap(":method", "POST", ":path", "/"), false)); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	return stream
}
