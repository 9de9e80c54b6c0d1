package processor

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/go-json-experiment/json/jsontext"
)

// jsonBody encodes a JSON document into WAF objects within libddwaf's limits (depth,
// container size, string length) while it is tokenized, without building a Go tree
// first; strings and containers go to a wafArena. A document cut at the body limit, or
// broken, still yields everything read before the cut.
type jsonBody struct {
	doc []byte
	// keepRepeats gives the WAF every occurrence of a repeated value; it must when a rule
	// or an exclusion reads the body by key path (see value).
	keepRepeats bool
}

var errNotJSON = errors.New("body is not JSON")

// valid reports whether the body starts like a JSON document; parseBody falls back to
// text otherwise.
func (b jsonBody) valid() bool {
	t := bytes.TrimLeft(b.doc, " \t\r\n")
	if len(t) == 0 {
		return false
	}
	switch t[0] {
	case '{', '[', '"', 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// Attackers send what the upstream's parser accepts: repeated names and invalid UTF-8 must
// not end the inspection early.
var jsonOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// Encode implements waf.Encodable.
func (b jsonBody) Encode(cfg waf.EncoderConfig, obj *waf.WAFObject, depth int) (map[waf.TruncationReason][]int, error) {
	if !b.valid() {
		return nil, errNotJSON
	}
	arena := newWAFArena(cfg.Pinner, len(b.doc))
	cfg.Pinner = arena
	e := jsonEncoder{cfg: cfg, arena: arena, dec: jsontext.NewDecoder(bytes.NewReader(b.doc), jsonOptions...), keepRepeats: b.keepRepeats}
	e.stack = append(e.stack, *obj) // obj may be a map item: its key stays
	if ok, _ := e.value(0, depth); !ok {
		return nil, errNotJSON
	}
	*obj = e.stack[0]
	return e.truncations, nil
}

type jsonEncoder struct {
	cfg         waf.EncoderConfig
	arena       *wafArena
	dec         *jsontext.Decoder
	seen        map[seenKey]struct{}
	keepRepeats bool
	stack       []waf.WAFObject // the value being read and its parents' items read so far
	stop        bool            // the input ended or broke, or the time budget ran out
	tokens      int
	truncations map[waf.TruncationReason][]int
}

// peek reports the kind of the next token, or 0 when reading must stop.
func (e *jsonEncoder) peek() jsontext.Kind {
	if e.stop {
		return 0
	}
	e.tokens++
	if e.tokens%64 == 0 && e.cfg.Timer != nil && e.cfg.Timer.Exhausted() {
		e.stop = true
		return 0
	}
	k := e.dec.PeekKind()
	if k == jsontext.KindInvalid {
		e.stop = true
		return 0
	}
	return k
}

// read consumes the next token or scalar and returns its JSON text, valid until the next read.
func (e *jsonEncoder) read(k jsontext.Kind) []byte {
	var raw []byte
	var err error
	switch k {
	case '{', '}', '[', ']':
		_, err = e.dec.ReadToken()
	default:
		raw, err = e.dec.ReadValue()
	}
	if err != nil {
		e.stop = true
	}
	return raw
}

// value encodes the next value into e.stack[at]. It reports false when there was none, and
// repeated when it was a scalar or an empty container seen before in this document, which
// it leaves out: libddwaf's cost grows with every value it visits, and API payloads repeat
// values (statuses, tags, names, quantities) many times, while a repeat can match nothing
// its first occurrence did not — unless something reads the body by key path: an
// exclusion of the parameter where a payload first occurs would hide its repeat elsewhere.
// The recommended ruleset reads no body by key path; when the rules or the policy do, or
// when API discovery samples the request (schemas need every field), repeats are kept.
func (e *jsonEncoder) value(at, depth int) (ok, repeated bool) {
	k := e.peek()
	if k == '}' || k == ']' { // where a value must be: the document is broken
		e.stop = true
	}
	if e.stop {
		return false, false
	}
	raw := e.read(k)
	if e.stop {
		return false, false
	}
	obj := &e.stack[at] // valid until the stack grows: containers below re-index
	switch k {
	case '{', '[':
		if depth <= 0 {
			e.truncated(waf.ObjectTooDeep, e.skip())
			obj.SetNil()
			return true, false
		}
		var items int
		if k == '{' {
			items = e.object(at, depth-1)
		} else {
			items = e.array(at, depth-1)
		}
		return true, items == 0 && e.repeated(k, "")
	case '"':
		s := e.arena.unquote(raw)
		if e.repeated(k, s) {
			e.arena.forget(s)
			return true, true
		}
		e.setString(obj, s)
	case '0':
		s := e.arena.copy(raw)
		if e.repeated(k, s) {
			e.arena.forget(s)
			return true, true
		}
		e.number(s, obj)
	default:
		if e.repeated(k, "") {
			return true, true
		}
		if k == 'n' {
			obj.SetNil()
		} else {
			obj.SetBool(k == 't')
		}
	}
	return true, false
}

// seenKey is a value or an object name given to the WAF; kind tells them apart: a
// jsontext.Kind for values, nameKind for names.
type seenKey struct {
	kind jsontext.Kind
	text string
}

const nameKind jsontext.Kind = 'k'

// repeated records a value or a name and reports whether it was given to the WAF before.
func (e *jsonEncoder) repeated(kind jsontext.Kind, text string) bool {
	if e.keepRepeats {
		return false
	}
	key := seenKey{kind, text}
	if _, ok := e.seen[key]; ok {
		return true
	}
	if e.seen == nil {
		e.seen = map[seenKey]struct{}{}
	}
	e.seen[key] = struct{}{}
	return false
}

// number keeps integers as integers and everything else as a float, as libddwaf's own
// JSON parser does; a number too large for both stays text.
func (e *jsonEncoder) number(s string, obj *waf.WAFObject) {
	if !strings.ContainsAny(s, ".eE") { // spares ParseInt's error on a float
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			obj.SetInt(i)
			return
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		obj.SetFloat(f)
		return
	}
	e.setString(obj, s)
}

func (e *jsonEncoder) truncated(reason waf.TruncationReason, size int) {
	if e.truncations == nil {
		e.truncations = map[waf.TruncationReason][]int{}
	}
	e.truncations[reason] = append(e.truncations[reason], size)
}

func (e *jsonEncoder) setString(obj *waf.WAFObject, s string) {
	if len(s) > e.cfg.MaxStringSize {
		e.truncated(waf.StringTooLong, len(s))
		s = s[:e.cfg.MaxStringSize]
	}
	obj.SetString(e.cfg.Pinner, s)
}

// object reads the members of an object and returns how many the WAF gets.
func (e *jsonEncoder) object(at, depth int) int {
	dropped := 0
	for {
		k := e.peek()
		if k != '"' {
			if k == '}' {
				e.read(k)
			}
			break
		}
		key := e.arena.unquote(e.read(k))
		if e.stop {
			break
		}
		if len(e.stack)-at-1 >= e.cfg.MaxContainerSize {
			dropped++
			e.skipValue()
			continue
		}
		if len(key) > e.cfg.MaxStringSize {
			e.truncated(waf.StringTooLong, len(key))
			key = key[:e.cfg.MaxStringSize]
		}
		nameRepeated := e.repeated(nameKind, key)
		item := len(e.stack)
		e.stack = append(e.stack, waf.WAFObject{})
		e.stack[item].SetMapKey(e.cfg.Pinner, key)
		switch ok, repeated := e.value(item, depth); {
		case ok && repeated && nameRepeated:
			e.stack = e.stack[:item] // nothing the WAF has not had
		case !ok || repeated:
			e.stack[item].SetNil() // the name is still inspected
		}
	}
	return e.close(at, dropped, true)
}

// array reads the elements of an array and returns how many the WAF gets.
func (e *jsonEncoder) array(at, depth int) int {
	dropped := 0
	for {
		if k := e.peek(); k == 0 || k == ']' {
			if k == ']' {
				e.read(k)
			}
			break
		}
		if len(e.stack)-at-1 >= e.cfg.MaxContainerSize {
			dropped++
			e.skipValue()
			continue
		}
		item := len(e.stack)
		e.stack = append(e.stack, waf.WAFObject{})
		if ok, repeated := e.value(item, depth); !ok || repeated || e.stack[item].IsUnusable() {
			e.stack = e.stack[:item]
		}
	}
	return e.close(at, dropped, false)
}

// close ends the container at e.stack[at]: its items, above it, move to the arena. It
// returns their number.
func (e *jsonEncoder) close(at, dropped int, isMap bool) int {
	items := e.stack[at+1:]
	if dropped > 0 {
		e.truncated(waf.ContainerTooLarge, len(items)+dropped)
	}
	stored := e.arena.store(items)
	e.stack = e.stack[:at+1]
	if isMap {
		e.stack[at].SetMapData(e.cfg.Pinner, stored)
	} else {
		e.stack[at].SetArrayData(e.cfg.Pinner, stored)
	}
	return len(stored)
}

// skipValue consumes the next value, whatever its size.
func (e *jsonEncoder) skipValue() {
	if !e.stop && e.dec.SkipValue() != nil {
		e.stop = true
	}
}

// skip consumes the rest of a container whose opening token was read and returns the
// depth it reached, for the truncation report.
func (e *jsonEncoder) skip() int {
	level, deepest := 1, 1
	for level > 0 {
		k := e.peek()
		if k == 0 {
			break
		}
		e.read(k)
		switch k {
		case '{', '[':
			level++
			deepest = max(deepest, level)
		case '}', ']':
			level--
		}
	}
	return deepest
}
