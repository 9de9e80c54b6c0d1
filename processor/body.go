package processor

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"unicode/utf8"
)

// Limits of the structures built from bodies; they match libddwaf's, so that nothing is
// built that the WAF would cut anyway.
const (
	maxStringLength = 4096
	maxContainerLen = 256
	maxDepth        = 20
	textOverlap     = 256 // bytes repeated across text chunks, so a payload on a boundary is seen
)

// bodyKind is how a body is read, from its content type and, when that says nothing, its first byte.
type bodyKind int

const (
	bodySkip bodyKind = iota
	bodyJSON
	bodyForm
	bodyMultipart
	bodyXML
	bodyText
)

func classifyBody(contentType string, body []byte) (bodyKind, map[string]string) {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mediaType = strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	}
	switch {
	case mediaType == "application/json", strings.HasSuffix(mediaType, "+json"), mediaType == "text/json":
		return bodyJSON, params
	case mediaType == "application/x-www-form-urlencoded":
		return bodyForm, params
	case mediaType == "multipart/form-data":
		return bodyMultipart, params
	case mediaType == "application/xml", mediaType == "text/xml", strings.HasSuffix(mediaType, "+xml"):
		return bodyXML, params
	case strings.HasPrefix(mediaType, "text/"):
		return bodyText, params
	case mediaType == "" || mediaType == "application/octet-stream":
		return sniffBody(body), params
	}
	return bodySkip, params
}

// sniffBody guesses a body sent without a useful content type; binary stays uninspected.
func sniffBody(body []byte) bodyKind {
	t := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(t) == 0:
		return bodySkip
	case t[0] == '{' || t[0] == '[':
		return bodyJSON
	case t[0] == '<':
		return bodyXML
	case utf8.Valid(t[:min(len(t), 512)]) && !bytes.ContainsRune(t[:min(len(t), 512)], 0):
		return bodyText
	}
	return bodySkip
}

// parsedBody is what the WAF sees of a request body.
type parsedBody struct {
	value     any
	filenames []string
	base64    []string // decoded text of the values that are base64 (base64.go)
}

// addresses are the body-phase addresses for the WAF.
func (p parsedBody) addresses() map[string]any {
	a := map[string]any{}
	if p.value != nil {
		a[addrBody] = p.value
	}
	if len(p.filenames) > 0 {
		a[addrFilenames] = p.filenames
	}
	if len(p.base64) > 0 {
		a[addrBodyBase64] = p.base64
	}
	return a
}

// parseBody reads a request body (already cut to the body limit) by its content type;
// keepRepeats is jsonBody's.
// Malformed and truncated bodies give whatever could be read before the fault.
func parseBody(contentType string, body []byte, keepRepeats bool) parsedBody {
	kind, params := classifyBody(contentType, body)
	var d base64Decoder
	var p parsedBody
	switch kind {
	case bodyJSON:
		if b := (jsonBody{doc: body, keepRepeats: keepRepeats}); b.valid() {
			p = parsedBody{value: b}
			d.addJSONStrings(body)
		} else {
			p = parsedBody{value: textChunks(body)}
		}
	case bodyForm:
		form := parseQuery(string(body))
		p = parsedBody{value: form}
		d.addAll(form)
	case bodyMultipart:
		p = parseMultipart(body, params["boundary"])
		if fields, ok := p.value.(map[string][]string); ok {
			d.addAll(fields)
		}
	case bodyXML:
		p = parsedBody{value: parseXML(body)}
	case bodyText:
		p = parsedBody{value: textChunks(body)}
	}
	p.base64 = d.out
	return p
}

// textChunks splits text into overlapping pieces no longer than libddwaf reads of one
// string, so that a payload past the first 4 KiB is inspected too.
func textChunks(body []byte) []string {
	if len(body) <= maxStringLength {
		return []string{string(body)}
	}
	var out []string
	for start := 0; start < len(body) && len(out) < maxContainerLen; start += maxStringLength - textOverlap {
		out = append(out, string(body[start:min(len(body), start+maxStringLength)]))
	}
	return out
}

func parseMultipart(body []byte, boundary string) parsedBody {
	if boundary == "" {
		return parsedBody{value: textChunks(body)}
	}
	fields := map[string][]string{}
	var files []string
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for len(fields)+len(files) < maxContainerLen {
		part, err := r.NextPart()
		if err != nil {
			break // io.EOF, or a truncated or malformed part: keep what was read
		}
		name := part.FormName()
		if fn := part.FileName(); fn != "" {
			files = append(files, fn)
			fields[name] = append(fields[name], fn)
			continue
		}
		data, err := io.ReadAll(io.LimitReader(part, maxStringLength))
		if len(data) > 0 || err == nil {
			fields[name] = append(fields[name], string(data))
		}
		if err != nil && !errors.Is(err, io.EOF) {
			break
		}
	}
	return parsedBody{value: fields, filenames: files}
}

// parseXML builds element name → children, with attribute values and text as strings.
// DOCTYPE and other directives are kept as text, so that entity declarations reach the XXE
// rules. A document that does not parse is also given whole as text.
func parseXML(body []byte) any {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = false
	d.Entity = xml.HTMLEntity
	root := &xmlNode{}
	stack := []*xmlNode{root}
	for tokens := 0; tokens < 100000; tokens++ {
		tok, err := d.RawToken()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// What could not be parsed is exactly what an evasion hides: inspect it as text too.
				return []any{root.tree(), textChunks(body)}
			}
			break
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			n := &xmlNode{name: t.Name.Local}
			for _, a := range t.Attr {
				n.add(map[string]any{"@" + a.Name.Local: a.Value})
			}
			if len(stack) < maxDepth {
				top.add(n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case xml.CharData:
			if s := strings.TrimSpace(string(t)); s != "" {
				top.add(s)
			}
		case xml.Directive:
			top.add("<!" + string(t) + ">")
		case xml.ProcInst:
			top.add("<?" + t.Target + " " + string(t.Inst) + "?>")
		case xml.Comment:
			top.add("<!--" + string(t) + "-->")
		}
	}
	return root.tree()
}

type xmlNode struct {
	name     string
	children []any
}

func (n *xmlNode) add(v any) {
	if len(n.children) < maxContainerLen {
		n.children = append(n.children, v)
	}
}

func (n *xmlNode) tree() any {
	out := make([]any, 0, len(n.children))
	for _, c := range n.children {
		if child, ok := c.(*xmlNode); ok {
			out = append(out, map[string]any{child.name: child.tree()})
		} else {
			out = append(out, c)
		}
	}
	return out
}
