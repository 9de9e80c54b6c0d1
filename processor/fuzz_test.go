package processor

import (
	"errors"
	"testing"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/DataDog/go-libddwaf/v4/waferrors"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// FuzzRequestMapping feeds arbitrary paths, headers and bodies through the mapping from
// Envoy's messages to WAF addresses, and through a real WAF context, which must neither
// panic nor stay open.
func FuzzRequestMapping(f *testing.F) {
	f.Add("/a/b?c=d&e=%zz", "cookie", "a=b; c", "application/json", []byte(`{"a":[1,{"b":"c"}]`))
	f.Add("http://h/x?y", "x-forwarded-for", "1.2.3.4, ::1", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--"))
	f.Add("/%", ":authority", "\xff", "text/xml", []byte("<a b='<'>"))
	f.Add("", "content-type", "", "", []byte{0, 1, 2})
	e, err := newEngine("")
	if err != nil {
		f.Fatal(err)
	}
	defer e.close()
	resolver := clientIPResolver{trustedHops: 1}
	f.Fuzz(func(t *testing.T, path, hkey, hval, contentType string, body []byte) {
		hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":path", RawValue: []byte(path)}, {Key: ":method", Value: "POST"},
			{Key: hkey, RawValue: []byte(hval)}, {Key: "content-type", RawValue: []byte(contentType)},
		}}
		req := parseRequestHeaders(hm)
		addrs := req.addresses(resolver.resolve(nil, req.headers), "")
		parsed := parseBody(req.contentType, body, false)
		if parsed.value != nil {
			addrs[addrBody] = parsed.value
		}
		ctx, _, err := e.acquire(DefaultWAFTimeout * 10)
		if err != nil {
			t.Fatal(err)
		}
		defer ctx.Close()
		if _, err := ctx.Run(waf.RunAddressData{Persistent: addrs, TimerKey: timerKey}); err != nil && !errors.Is(err, waferrors.ErrTimeout) {
			t.Fatalf("WAF run on mapped request: %v", err)
		}
	})
}
