package processor

import (
	"bytes"
	"encoding/json"
	"errors"

	waf "github.com/DataDog/go-libddwaf/v4"
)

// jsonBody encodes a JSON document into WAF objects within libddwaf's limits (depth,
// container size, string length). A complete document is decoded whole and then encoded
// (jsontree.go, the fast path); one that does not decode — a body cut at the limit — is
// encoded while it is tokenized, so that it still yields everything read before the cut.
type jsonBody []byte

var errNotJSON = errors.New("body is not JSON")

// valid reports whether the body starts like a JSON document; parseBody falls back to
// text otherwise.
func (b jsonBody) valid() bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 {
		return false
	}
	switch t[0] {
	case '{', '[', '"', 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// Encode implements waf.Encodable.
func (b jsonBody) Encode(cfg waf.EncoderConfig, obj *waf.WAFObject, depth int) (map[waf.TruncationReason][]int, error) {
	if !b.valid() {
		return nil, errNotJSON
	}
	fast := jsonEncoder{cfg: cfg}
	if b.encodeTree(&fast, obj, depth) {
		return fast.truncations, nil
	}
	return b.encodeStream(cfg, obj, depth)
}

// encodeStream encodes while tokenizing, for documents that do not decode whole.
func (b jsonBody) encodeStream(cfg waf.EncoderConfig, obj *waf.WAFObject, depth int) (map[waf.TruncationReason][]int, error) {
	e := jsonEncoder{cfg: cfg, dec: json.NewDecoder(bytes.NewReader(b))}
	e.dec.UseNumber()
	tok, err := e.dec.Token()
	if err != nil {
		return nil, errNotJSON
	}
	e.value(tok, obj, depth)
	return e.truncations, nil
}

type jsonEncoder struct {
	cfg         waf.EncoderConfig
	seen        map[string]struct{} // string values already given to the WAF
	dec         *json.Decoder
	stop        bool // the input ended or broke, or the time budget ran out
	tokens      int
	truncations map[waf.TruncationReason][]int
}

func (e *jsonEncoder) next() (json.Token, bool) {
	if e.stop {
		return nil, false
	}
	e.tokens++
	if e.tokens%64 == 0 && e.cfg.Timer != nil && e.cfg.Timer.Exhausted() {
		e.stop = true
		return nil, false
	}
	tok, err := e.dec.Token()
	if err != nil {
		e.stop = true
		return nil, false
	}
	return tok, true
}

func (e *jsonEncoder) truncated(reason waf.TruncationReason, size int) {
	if e.truncations == nil {
		e.truncations = map[waf.TruncationReason][]int{}
	}
	e.truncations[reason] = append(e.truncations[reason], size)
}

func (e *jsonEncoder) value(tok json.Token, obj *waf.WAFObject, depth int) {
	switch v := tok.(type) {
	case json.Delim:
		if v != '{' && v != '[' {
			obj.SetInvalid()
			return
		}
		if depth <= 0 {
			e.truncated(waf.ObjectTooDeep, e.skip())
			obj.SetNil()
			return
		}
		if v == '{' {
			e.object(obj, depth-1)
		} else {
			e.array(obj, depth-1)
		}
	case string:
		e.setString(obj, v)
	case json.Number:
		if i, err := v.Int64(); err == nil {
			obj.SetInt(i)
		} else if f, err := v.Float64(); err == nil {
			obj.SetFloat(f)
		} else {
			e.setString(obj, v.String())
		}
	case bool:
		obj.SetBool(v)
	default:
		obj.SetNil()
	}
}

func (e *jsonEncoder) setString(obj *waf.WAFObject, s string) {
	if len(s) > e.cfg.MaxStringSize {
		e.truncated(waf.StringTooLong, len(s))
		s = s[:e.cfg.MaxStringSize]
	}
	obj.SetString(e.cfg.Pinner, s)
}

func (e *jsonEncoder) object(obj *waf.WAFObject, depth int) {
	var items []waf.WAFObject
	dropped := 0
	for {
		tok, ok := e.next()
		if !ok || tok == json.Delim('}') {
			break
		}
		key, _ := tok.(string)
		valTok, ok := e.next()
		if !ok {
			break
		}
		if len(items) >= e.cfg.MaxContainerSize {
			dropped++
			e.skipValue(valTok)
			continue
		}
		var item waf.WAFObject
		if len(key) > e.cfg.MaxStringSize {
			e.truncated(waf.StringTooLong, len(key))
			key = key[:e.cfg.MaxStringSize]
		}
		item.SetMapKey(e.cfg.Pinner, key)
		if s, ok := valTok.(string); ok && e.repeated(s) {
			item.SetNil() // the key is still inspected, the repeated value is not
		} else {
			e.value(valTok, &item, depth)
		}
		items = append(items, item)
	}
	if dropped > 0 {
		e.truncated(waf.ContainerTooLarge, len(items)+dropped)
	}
	obj.SetMapData(e.cfg.Pinner, items)
}

func (e *jsonEncoder) array(obj *waf.WAFObject, depth int) {
	var items []waf.WAFObject
	dropped := 0
	for {
		tok, ok := e.next()
		if !ok || tok == json.Delim(']') {
			break
		}
		if len(items) >= e.cfg.MaxContainerSize {
			dropped++
			e.skipValue(tok)
			continue
		}
		if s, ok := tok.(string); ok && e.repeated(s) {
			continue
		}
		var item waf.WAFObject
		e.value(tok, &item, depth)
		if !item.IsUnusable() {
			items = append(items, item)
		}
	}
	if dropped > 0 {
		e.truncated(waf.ContainerTooLarge, len(items)+dropped)
	}
	obj.SetArrayData(e.cfg.Pinner, items)
}

// repeated reports whether a string value was seen before in this document. libddwaf's
// cost grows with every string it scans, and API payloads repeat values (statuses, tags,
// names) many times: a repeat can match nothing its first occurrence did not. No rule of
// the recommended ruleset reads the body by key path, so dropping repeats loses nothing.
func (e *jsonEncoder) repeated(s string) bool {
	if e.seen == nil {
		e.seen = map[string]struct{}{}
	}
	if _, ok := e.seen[s]; ok {
		return true
	}
	e.seen[s] = struct{}{}
	return false
}

// skipValue consumes the value that starts with tok.
func (e *jsonEncoder) skipValue(tok json.Token) {
	if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') {
		e.skip()
	}
}

// skip consumes the rest of a container whose opening token was read and returns the
// depth it reached, for the truncation report.
func (e *jsonEncoder) skip() int {
	level, deepest := 1, 1
	for level > 0 {
		tok, ok := e.next()
		if !ok {
			break
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			level++
			deepest = max(deepest, level)
		case json.Delim('}'), json.Delim(']'):
			level--
		}
	}
	return deepest
}
