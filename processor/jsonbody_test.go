package processor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/DataDog/go-libddwaf/v4/timer"
)

// encodeForTest runs the JSON encoder through libddwaf's own encoder entry point and decodes
// the result back to Go values.
func encodeForTest(t *testing.T, body jsonBody, limits waf.EncoderConfig) (any, map[waf.TruncationReason][]int) {
	t.Helper()
	var pinner runtime.Pinner
	defer pinner.Unpin()
	limits.Pinner = &pinner
	tm, _ := timer.NewTimer(timer.WithUnlimitedBudget())
	limits.Timer = tm
	var obj waf.WAFObject
	obj.SetMapKey(&pinner, "server.request.body") // as libddwaf's encoder calls it: a map item
	trunc, err := body.Encode(limits, &obj, limits.MaxObjectDepth)
	if err != nil {
		t.Fatalf("Encode(%q): %v", body.doc, err)
	}
	if obj.MapKey() != "server.request.body" {
		t.Fatalf("Encode(%q) lost the key of the item it fills: %q", body.doc, obj.MapKey())
	}
	collectGarbage() // what the WAF reads must be pinned, not merely still reachable
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
		{`{"a":"x","b":"x","c":["x","y"]}`, `map[a:x b:<nil> c:[y]]`, 0},                                 // repeats dropped, keys kept
		{`[{"q":1,"n":true},{"q":1,"n":true,"m":1},{"q":1}]`, `[map[n:true q:1] map[m:<nil>] map[]]`, 0}, // and a member with nothing new
		{`{"a":"sql","b":[1,2`, `map[a:sql b:[1 2]]`, 0},                                                 // truncated document
		{`{"a":1.5e3,"b":123456789012345678901234567890}`, `map[a:1500 b:1.2345678901234568e+29]`, 0},
		{`{"a":1e999}`, `map[a:1e999]`, 0},                      // too large for a float: kept as text
		{`{"a":"x","a":"<s>"}`, `map[a:<s>]`, 0},                // a repeated name does not end the inspection
		{"[\"\xff<\",\"\\u00e9\\n\"]", "[\ufffd< \u00e9\n]", 0}, // invalid UTF-8 replaced, escapes decoded
	} {
		got, trunc := encodeForTest(t, jsonBody{doc: []byte(tc.body)}, limits)
		if s := fmtValue(got); s != tc.want {
			t.Errorf("%s: got %s, want %s", tc.body, s, tc.want)
		}
		if tc.trunc != 0 && len(trunc[tc.trunc]) == 0 {
			t.Errorf("%s: truncation %v not reported (%v)", tc.body, tc.trunc, trunc)
		}
	}
	// Where the configuration reads bodies by key path, every repeat stays.
	doc := jsonBody{doc: []byte(`[{"a":"x","b":"x"},{"a":"x"},"x"]`), keepRepeats: true}
	if got, _ := encodeForTest(t, doc, limits); fmtValue(got) != `[map[a:x b:x] map[a:x] x]` {
		t.Errorf("keepRepeats: got %s", fmtValue(got))
	}
	if (jsonBody{doc: []byte("hello")}).valid() || !(jsonBody{doc: []byte(" \n{")}).valid() {
		t.Error("valid() misjudges JSON starts")
	}
}

func fmtValue(v any) string { return fmt.Sprint(v) }

// collectGarbage runs the collector after filling the heap with fresh garbage, so that
// memory the encoder forgot to pin would be freed and overwritten.
func collectGarbage() {
	for range 3 {
		junk := make([][]byte, 0, 256)
		for range 256 {
			junk = append(junk, bytes.Repeat([]byte{0xAA}, 512))
		}
		runtime.KeepAlive(junk)
		runtime.GC()
	}
}

// FuzzJSONBody holds the encoder to encoding/json, which stands for the upstream's parser:
// for a document encoding/json accepts, every key, string and number it reads reaches the
// WAF; for any input, the encoder gives an object libddwaf can read or an error, never a panic.
func FuzzJSONBody(f *testing.F) {
	for _, seed := range []string{`{"a":[1,2.5,-3e2,{"b":"c"}],"d":null,"e":true}`, `["x","x",{"x":"x"}]`,
		`{"a":"\u00e9\ud83d\ude00\n","a":"dup"}`, "\"\xff\xfe\"", `{"a":[{"b":[{"c":1}]}]`, `123456789012345678901234567890`} {
		f.Add([]byte(seed))
	}
	unlimited := waf.EncoderConfig{MaxContainerSize: 1 << 20, MaxStringSize: 1 << 20, MaxObjectDepth: 1000}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var pinner runtime.Pinner
		defer pinner.Unpin()
		cfg := unlimited
		cfg.Pinner = &pinner
		var want any
		accepted := json.Unmarshal(doc, &want) == nil && jsonDepth(want) <= cfg.MaxObjectDepth
		var obj waf.WAFObject
		if _, err := (jsonBody{doc: doc}).Encode(cfg, &obj, cfg.MaxObjectDepth); err != nil {
			if accepted {
				t.Fatalf("%q: encoding/json reads it, the encoder refuses it: %v", doc, err)
			}
			return
		}
		got := map[string]bool{}
		if err := wafLeaves(&obj, got); err != nil {
			t.Fatalf("%q encodes to an object libddwaf's decoder refuses: %v", doc, err)
		}
		if !accepted {
			return
		}
		for leaf := range leaves(want) {
			if !got[leaf] {
				t.Fatalf("%q: encoding/json reads %s, the WAF does not get it (it gets %v)", doc, leaf, got)
			}
		}
	})
}

// wafLeaves lists the keys, strings and numbers of an encoded document.
func wafLeaves(obj *waf.WAFObject, out map[string]bool) error {
	if obj.IsMap() || obj.IsArray() {
		items, err := obj.Values()
		if err != nil {
			return err
		}
		for i := range items {
			if obj.IsMap() {
				out["key "+items[i].MapKey()] = true
			}
			if err := wafLeaves(&items[i], out); err != nil {
				return err
			}
		}
		return nil
	}
	v, err := obj.AnyValue()
	if err != nil {
		return err
	}
	leaf(v, out)
	return nil
}

// leaves lists the keys, strings and numbers of a document encoding/json decoded.
func leaves(v any) map[string]bool {
	out := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				out["key "+k] = true
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		default:
			leaf(x, out)
		}
	}
	walk(v)
	return out
}

func leaf(v any, out map[string]bool) {
	switch x := v.(type) {
	case string:
		out["string "+x] = true
	case int64: // the WAF holds integers as such; encoding/json reads every number as float64
		out[fmt.Sprintf("number %v", float64(x))] = true
	case uint64:
		out[fmt.Sprintf("number %v", float64(x))] = true
	case float64:
		if x == 0 {
			x = 0 // -0, which the WAF holds as the integer 0
		}
		out[fmt.Sprintf("number %v", x)] = true
	}
}

func jsonDepth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			d = max(d, jsonDepth(c))
		}
	case []any:
		for _, c := range x {
			d = max(d, jsonDepth(c))
		}
	default:
		return 0
	}
	return d + 1
}

func TestReadsBodyByKeyPath(t *testing.T) {
	input := func(addr string, kp any) map[string]any {
		return map[string]any{"rules": []any{map[string]any{"conditions": []any{map[string]any{
			"parameters": map[string]any{"inputs": []any{map[string]any{"address": addr, "key_path": kp}}}}}}}}
	}
	for _, tc := range []struct {
		fragment map[string]any
		want     bool
	}{
		{input(addrBody, []any{"a"}), true},
		{input(addrResponseBody, []string{"a", "b"}), true},
		{input(addrBody, []any{}), false},
		{input(addrQuery, []any{"a"}), false},
		{map[string]any{}, false},
	} {
		if got := readsBodyByKeyPath(tc.fragment); got != tc.want {
			t.Errorf("readsBodyByKeyPath(%v) = %v, want %v", tc.fragment, got, tc.want)
		}
	}
}
