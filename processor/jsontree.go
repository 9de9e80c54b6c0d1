package processor

import (
	"bytes"
	"encoding/json"
	"slices"

	waf "github.com/DataDog/go-libddwaf/v4"
)

// encodeTree is the fast path of jsonBody.Encode for a complete document: encoding/json
// decodes a whole value about three times faster than its token stream, and the tree is
// then given to the WAF with the same limits and the same dropping of repeated strings as
// the stream encoder. Object keys are visited in sorted order, so that which keys a size
// limit keeps, and which occurrence of a repeated value stays, is deterministic. It
// reports false when the document does not decode (truncated or broken); the stream
// encoder then reads what it can.
func (b jsonBody) encodeTree(e *jsonEncoder, obj *waf.WAFObject, depth int) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return false
	}
	e.tree(v, obj, depth)
	return true
}

func (e *jsonEncoder) tree(v any, obj *waf.WAFObject, depth int) {
	if e.stop || (e.tokens%64 == 0 && e.cfg.Timer != nil && e.cfg.Timer.Exhausted()) {
		e.stop = true
		obj.SetNil()
		return
	}
	e.tokens++
	switch x := v.(type) {
	case map[string]any:
		if depth <= 0 {
			e.truncated(waf.ObjectTooDeep, treeDepth(x))
			obj.SetNil()
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if len(keys) > e.cfg.MaxContainerSize {
			e.truncated(waf.ContainerTooLarge, len(keys))
			keys = keys[:e.cfg.MaxContainerSize]
		}
		items := make([]waf.WAFObject, len(keys))
		for i, key := range keys {
			item := &items[i]
			val := x[key]
			if len(key) > e.cfg.MaxStringSize {
				e.truncated(waf.StringTooLong, len(key))
				key = key[:e.cfg.MaxStringSize]
			}
			item.SetMapKey(e.cfg.Pinner, key)
			if s, ok := val.(string); ok && e.repeated(s) {
				item.SetNil() // the key is still inspected, the repeated value is not
				continue
			}
			e.tree(val, item, depth-1)
		}
		obj.SetMapData(e.cfg.Pinner, items)
	case []any:
		if depth <= 0 {
			e.truncated(waf.ObjectTooDeep, treeDepth(x))
			obj.SetNil()
			return
		}
		if len(x) > e.cfg.MaxContainerSize {
			e.truncated(waf.ContainerTooLarge, len(x))
			x = x[:e.cfg.MaxContainerSize]
		}
		items := make([]waf.WAFObject, 0, len(x))
		for _, val := range x {
			if s, ok := val.(string); ok && e.repeated(s) {
				continue
			}
			var item waf.WAFObject
			e.tree(val, &item, depth-1)
			if !item.IsUnusable() {
				items = append(items, item)
			}
		}
		obj.SetArrayData(e.cfg.Pinner, items)
	case string:
		e.setString(obj, x)
	case json.Number:
		e.value(x, obj, depth)
	case bool:
		obj.SetBool(x)
	default:
		obj.SetNil()
	}
}

// treeDepth is how deep a value nests, for the truncation report.
func treeDepth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			d = max(d, treeDepth(c))
		}
	case []any:
		for _, c := range x {
			d = max(d, treeDepth(c))
		}
	default:
		return 0
	}
	return d + 1
}
