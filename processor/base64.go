package processor

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// Addresses of the base64-decoded values, one per phase: a libddwaf context keeps the first
// value of an address.
const (
	addrBase64     = "wafplane.request.base64"
	addrBodyBase64 = "wafplane.request.body.base64"
)

// Bounds of what is worth decoding: shorter values are words, longer ones files.
const (
	minBase64Len  = 8
	maxBase64Len  = 8 << 10
	maxBase64Vals = 64 // per request phase
)

// base64Text decodes a value that is entirely base64 (standard or URL alphabet, padded or
// not) into readable text. libddwaf's own base64_decode transformer leaves other values as
// they are, so a rule behind it would also run on every plain value; decoding here gives the
// rules the decoded text alone. Binary results (images, keys, random tokens) are dropped.
func base64Text(v string) (string, bool) {
	if len(v) < minBase64Len || len(v) > maxBase64Len {
		return "", false
	}
	urlSafe, std := false, false
	// An unescaped '+' in a query or form value arrives as a space.
	body := strings.TrimRight(strings.ReplaceAll(v, " ", "+"), "=")
	if len(v)-len(body) > 2 {
		return "", false
	}
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '+' || c == '/':
			std = true
		case c == '-' || c == '_':
			urlSafe = true
		default:
			return "", false
		}
	}
	if std && urlSafe {
		return "", false
	}
	enc := base64.RawStdEncoding
	if urlSafe {
		enc = base64.RawURLEncoding
	}
	out, err := enc.DecodeString(body)
	if err != nil || !readable(out) {
		return "", false
	}
	return string(out), true
}

// readable: valid UTF-8 without control characters other than tab, line breaks and NUL
// (which attackers put inside keywords).
func readable(b []byte) bool {
	if len(b) < 6 || !utf8.Valid(b) {
		return false
	}
	for _, c := range string(b) {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != 0 || c == 0x7f || c == utf8.RuneError {
			return false
		}
	}
	return true
}

// base64Decoder collects the decoded text of a request's base64 values, bounded.
type base64Decoder struct{ out []string }

func (d *base64Decoder) add(v string) {
	if len(d.out) >= maxBase64Vals {
		return
	}
	if s, ok := base64Text(v); ok {
		d.out = append(d.out, s)
	}
}

func (d *base64Decoder) addAll(m map[string][]string) {
	for _, vs := range m {
		for _, v := range vs {
			d.add(v)
		}
	}
}

// addJSONStrings finds the string literals of a JSON document that are only base64
// characters, without decoding the document: escapes and whitespace rule a literal out, as
// they never occur in base64.
func (d *base64Decoder) addJSONStrings(doc []byte) {
	start := -1
	for i, c := range doc {
		switch {
		case c == '"':
			if start >= 0 && i-start >= minBase64Len {
				d.add(string(doc[start:i]))
			}
			start = i + 1
		case start >= 0 && !isBase64Char(c):
			start = -1
		}
	}
}

func isBase64Char(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '+' || c == '/' || c == '-' || c == '_' || c == '='
}
