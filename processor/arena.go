package processor

import (
	"unsafe"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/go-json-experiment/json/jsontext"
)

// Largest blocks of the arena: most JSON bodies fit in one of each.
const (
	maxTextBlock   = 16 << 10
	maxObjectBlock = 512
)

// pinner is libddwaf's pin.Pinner, which lives in an internal package.
type pinner interface {
	Pin(any)
	Unpin()
}

// wafArena holds the strings and containers of one encoded JSON document in a few large
// blocks, each pinned once. Go's pinner takes a lock per call, and a body of a few KiB has
// hundreds of strings and containers: pinning and allocating them one by one cost more
// than reading the document. It is the Pinner the encoder hands to libddwaf's setters, so
// that pointers into its blocks are not pinned again.
type wafArena struct {
	pinner      pinner
	blocks      [][2]uintptr // address ranges already pinned
	text        []byte
	objects     []waf.WAFObject
	textBlock   int
	objectBlock int
}

// newWAFArena sizes the blocks for a document of size bytes.
func newWAFArena(p pinner, size int) *wafArena {
	return &wafArena{pinner: p, textBlock: min(max(size, 256), maxTextBlock), objectBlock: min(max(size/16, 16), maxObjectBlock)}
}

func (a *wafArena) Pin(v any) {
	if p, ok := v.(unsafe.Pointer); ok && a.owns(uintptr(p)) {
		return
	}
	a.pinner.Pin(v)
}

func (a *wafArena) Unpin() { a.pinner.Unpin() }

// owns looks at the newest blocks first: setters pin what was just stored.
func (a *wafArena) owns(p uintptr) bool {
	for i := len(a.blocks) - 1; i >= 0; i-- {
		if b := a.blocks[i]; p >= b[0] && p < b[1] {
			return true
		}
	}
	return false
}

func (a *wafArena) pinBlock(first unsafe.Pointer, size uintptr) {
	a.pinner.Pin(first)
	a.blocks = append(a.blocks, [2]uintptr{uintptr(first), uintptr(first) + size})
}

// reserve makes room for n more bytes of text, so that appending them never moves the block.
func (a *wafArena) reserve(n int) {
	if cap(a.text)-len(a.text) < n {
		a.text = make([]byte, 0, max(a.textBlock, n))
		a.pinBlock(unsafe.Pointer(unsafe.SliceData(a.text)), uintptr(cap(a.text)))
	}
}

// since returns the text appended from start on.
func (a *wafArena) since(start int) string {
	if len(a.text) == start {
		return ""
	}
	return unsafe.String(&a.text[start], len(a.text)-start)
}

// unquote decodes a JSON string literal (quotes included) into the arena.
func (a *wafArena) unquote(literal []byte) string {
	// Decoding never grows a literal more than threefold: an invalid UTF-8 byte becomes
	// U+FFFD, three bytes; escapes only shrink.
	a.reserve(3 * len(literal))
	start := len(a.text)
	a.text, _ = jsontext.AppendUnquote(a.text, literal) // invalid UTF-8 is replaced, not refused
	return a.since(start)
}

// copy puts raw text, a number, into the arena.
func (a *wafArena) copy(raw []byte) string {
	a.reserve(len(raw))
	start := len(a.text)
	a.text = append(a.text, raw...)
	return a.since(start)
}

// forget gives back the space of s, the last string unquoted.
func (a *wafArena) forget(s string) { a.text = a.text[:len(a.text)-len(s)] }

// store copies the items of a container into the arena.
func (a *wafArena) store(items []waf.WAFObject) []waf.WAFObject {
	if len(items) == 0 {
		return nil
	}
	if cap(a.objects)-len(a.objects) < len(items) {
		a.objects = make([]waf.WAFObject, 0, max(a.objectBlock, len(items)))
		a.pinBlock(unsafe.Pointer(unsafe.SliceData(a.objects)), uintptr(cap(a.objects))*unsafe.Sizeof(waf.WAFObject{}))
	}
	start := len(a.objects)
	a.objects = append(a.objects, items...)
	return a.objects[start:len(a.objects):len(a.objects)]
}
