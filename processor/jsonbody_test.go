package processor

import (
	"fmt"
	"runtime"
	"testing"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/DataDog/go-libddwaf/v4/timer"
)

// encodeForTest runs the JSON encoder through libddwaf's own encoder entry point and decodes
// the result back to Go values.
func encodeForTest(t *testing.T, body string, limits waf.EncoderConfig) (any, map[waf.TruncationReason][]int) {
	t.Helper()
	var pinner runtime.Pinner
	defer pinner.Unpin()
	limits.Pinner = &pinner
	tm, _ := timer.NewTimer(timer.WithUnlimitedBudget())
	limits.Timer = tm
	var obj waf.WAFObject
	trunc, err := jsonBody(body).Encode(limits, &obj, limits.MaxObjectDepth)
	if err != nil {
		t.Fatalf("Encode(%q): %v", body, err)
	}
	v, err := waf.DecodeObject(&obj)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v, trunc
}

func TestJSONBodyEncoding(t *testing.T) {
	limits := waf.EncoderConfig{MaxContainerSize: 3, MaxStringSize: 5, MaxObjectDepth: 3}
	for _, tc := range []struct {
		body, want string
		trunc      waf.TruncationReason
	}{
		{`{"a":1,"b":[true,null,"x"]}`, `map[a:1 b:[true x]]`, 0},
		{`{"a":"abcdefgh"}`, `map[a:abcde]`, waf.StringTooLong},
		{`[1,2,3,4,5]`, `[1 2 3]`, waf.ContainerTooLarge},
		{`{"a":{"b":{"c":{"d":1}}}}`, `map[a:map[b:map[c:<nil>]]]`, waf.ObjectTooDeep},
		{`{"a":"x","b":"x","c":["x","y"]}`, `map[a:x b:<nil> c:[y]]`, 0}, // repeats dropped, keys kept
		{`{"a":"sql","b":[1,2`, `map[a:sql b:[1 2]]`, 0},                 // truncated document
		{`{"a":1.5e3,"b":123456789012345678901234567890}`, `map[a:1500 b:1.2345678901234568e+29]`, 0},
	} {
		got, trunc := encodeForTest(t, tc.body, limits)
		if s := fmtValue(got); s != tc.want {
			t.Errorf("%s: got %s, want %s", tc.body, s, tc.want)
		}
		if tc.trunc != 0 && len(trunc[tc.trunc]) == 0 {
			t.Errorf("%s: truncation %v not reported (%v)", tc.body, tc.trunc, trunc)
		}
	}
	if jsonBody("hello").valid() || !jsonBody(" \n{").valid() {
		t.Error("valid() misjudges JSON starts")
	}
}

func fmtValue(v any) string { return fmt.Sprint(v) }

// The fast path (decode whole, then encode) and the token stream give the WAF the same
// values; documents here list keys in sorted order, the order the fast path visits them.
func TestJSONFastPathMatchesStream(t *testing.T) {
	limits := waf.EncoderConfig{MaxContainerSize: 4, MaxStringSize: 8, MaxObjectDepth: 4}
	for _, doc := range []string{
		`{"a":1,"b":[true,null,"x",2.5],"c":{"d":"abcdefghijkl"}}`,
		`[1,2,3,4,5,6,"x","x"]`,
		`{"a":{"b":{"c":{"d":{"e":1}}}}}`,
		`{"a":"x","b":"x","c":["x","y","y"],"d":-3,"e":1e400}`,
		`"just a string"`,
	} {
		var pinner runtime.Pinner
		tm, _ := timer.NewTimer(timer.WithUnlimitedBudget())
		cfg := limits
		cfg.Pinner, cfg.Timer = &pinner, tm
		var fast, stream waf.WAFObject
		ft, err1 := jsonBody(doc).Encode(cfg, &fast, limits.MaxObjectDepth)
		st, err2 := jsonBody(doc).encodeStream(cfg, &stream, limits.MaxObjectDepth)
		fv, _ := waf.DecodeObject(&fast)
		sv, _ := waf.DecodeObject(&stream)
		if err1 != nil || err2 != nil || fmtValue(fv) != fmtValue(sv) || len(ft) != len(st) {
			t.Errorf("%s: fast %s %v (%v), stream %s %v (%v)", doc, fmtValue(fv), ft, err1, fmtValue(sv), st, err2)
		}
		pinner.Unpin()
	}
}
