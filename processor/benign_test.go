package processor

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// The benign corpus of the false-positive gate (BenchmarkFalsePositives), assembled from
// what a Debian machine ships: no file of it is in the repository.
//
//   - natural text: paragraphs of /usr/share/doc (READMEs, changelogs, copyright files),
//     /usr/share/common-licenses, the man pages of /usr/share/man (troff markup removed),
//     and the translated messages of the gettext catalogs in /usr/share/locale (every
//     language installed: multilingual UI prose);
//   - benign requests: API calls, form posts and browser page loads generated from a fixed
//     seed, with realistic headers, cookies, tokens, passwords and that natural text as
//     user input.

// textSample is one piece of natural text and where it came from.
type textSample struct {
	source string
	text   string
}

const (
	maxParagraph     = 600   // longer paragraphs are cut: form fields and comments are short
	perSourceSamples = 12000 // per source kind, spread over its files
)

// naturalText gathers paragraphs from the sources above, the same ones on every run of a
// machine: files are read in name order and every n-th paragraph is kept.
func naturalText() []textSample {
	var out []textSample
	out = append(out, spread("doc", paragraphsUnder("/usr/share/doc", docFile, readMaybeGzip))...)
	out = append(out, spread("license", paragraphsUnder("/usr/share/common-licenses", func(string) bool { return true }, readMaybeGzip))...)
	out = append(out, spread("man", paragraphsUnder("/usr/share/man", manFile, readManPage))...)
	out = append(out, spread("gettext", catalogMessages("/usr/share/locale"))...)
	return out
}

func spread(source string, paras []string) []textSample {
	step := max(1, len(paras)/perSourceSamples)
	var out []textSample
	for i := 0; i < len(paras) && len(out) < perSourceSamples; i += step {
		out = append(out, textSample{source: source, text: paras[i]})
	}
	return out
}

func docFile(p string) bool {
	base := strings.ToLower(filepath.Base(p))
	return strings.HasPrefix(base, "readme") || strings.HasPrefix(base, "changelog") || base == "copyright" ||
		strings.HasSuffix(base, ".txt") || strings.HasSuffix(base, ".md") || base == "news" || base == "news.gz"
}

func manFile(p string) bool {
	return strings.HasSuffix(p, ".gz") && strings.Contains(p, "/man")
}

func paragraphsUnder(root string, want func(string) bool, read func(string) (string, error)) []string {
	var files []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && want(p) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	var out []string
	for _, f := range files {
		text, err := read(f)
		if err != nil || !utf8.ValidString(text) {
			continue
		}
		out = append(out, paragraphs(text)...)
	}
	return out
}

func readMaybeGzip(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var r io.Reader = io.LimitReader(f, 4<<20)
	if strings.HasSuffix(p, ".gz") {
		z, err := gzip.NewReader(r)
		if err != nil {
			return "", err
		}
		defer z.Close()
		r = io.LimitReader(z, 4<<20)
	}
	b, err := io.ReadAll(r)
	return string(b), err
}

var troffEscape = regexp.MustCompile(`\\f[BIRPC]|\\f\(..|\\s[-+]?\d|\\\*\(..|\\\*.|\\\(..|\\[&|^e%]`)

// readManPage keeps the text lines of a troff page, without requests and font escapes.
func readManPage(p string) (string, error) {
	raw, err := readMaybeGzip(p)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ".PP"), strings.HasPrefix(line, ".SH"), strings.HasPrefix(line, ".TP"), strings.HasPrefix(line, ".IP"):
			b.WriteString("\n\n")
		case strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'"):
		default:
			line = strings.ReplaceAll(troffEscape.ReplaceAllString(line, ""), `\-`, "-")
			b.WriteString(line + "\n")
		}
	}
	return b.String(), nil
}

// paragraphs splits text on blank lines, joins each paragraph's lines, and cuts it.
func paragraphs(text string) []string {
	var out []string
	for p := range strings.SplitSeq(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		p = strings.Join(strings.Fields(p), " ")
		if len(p) < 20 {
			continue
		}
		if len(p) > maxParagraph {
			cut := maxParagraph
			for !utf8.RuneStart(p[cut]) {
				cut--
			}
			p = p[:cut]
		}
		out = append(out, p)
	}
	return out
}

// catalogMessages reads the translations of every gettext catalog (.mo) under root.
func catalogMessages(root string) []string {
	var files []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".mo") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	var out []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, m := range moTranslations(raw) {
			m = strings.Join(strings.Fields(m), " ")
			if len(m) >= 20 && len(m) <= maxParagraph && utf8.ValidString(m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// moTranslations parses a GNU .mo file: a header, then tables of (length, offset) pairs.
func moTranslations(b []byte) []string {
	if len(b) < 28 {
		return nil
	}
	var order binary.ByteOrder = binary.LittleEndian
	if order.Uint32(b) != 0x950412de {
		order = binary.BigEndian
		if order.Uint32(b) != 0x950412de {
			return nil
		}
	}
	n, table := order.Uint32(b[8:]), order.Uint32(b[16:])
	var out []string
	for i := uint32(1); i < n; i++ { // entry 0 is the catalog's header
		at := uint64(table) + uint64(i)*8
		if at+8 > uint64(len(b)) {
			break
		}
		length, off := uint64(order.Uint32(b[at:])), uint64(order.Uint32(b[at+4:]))
		if off+length > uint64(len(b)) {
			break
		}
		out = append(out, strings.Split(string(b[off:off+length]), "\x00")...)
	}
	return out
}

// textExchanges places each sample as users would send it: in turn a search query, a form
// field and a JSON document's string.
func textExchanges(samples []textSample) []benignRequest {
	out := make([]benignRequest, 0, len(samples))
	for i, s := range samples {
		var x httpExchange
		switch i % 3 {
		case 0:
			x = browserGet("/search?q=" + url.QueryEscape(s.text))
		case 1:
			x = formPost("/contact", url.Values{"name": {"Ada Lovelace"}, "email": {"ada@example.org"}, "message": {s.text}})
		default:
			x = apiJSONPost("/api/v1/comments", map[string]any{"post_id": 1200 + i%50, "body": s.text, "lang": "auto"})
		}
		out = append(out, benignRequest{kind: "text/" + s.source, x: x})
	}
	return out
}

type benignRequest struct {
	kind string
	x    httpExchange
}

var userAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
	"curl/8.10.1", "python-requests/2.32.3", "okhttp/4.12.0", "Go-http-client/2.0", "PostmanRuntime/7.42.0",
}

func browserHeaders(rng *rand.Rand) [][2]string {
	return [][2]string{
		{"user-agent", userAgents[rng.IntN(len(userAgents))]},
		{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"},
		{"accept-language", []string{"en-US,en;q=0.9", "fr-FR,fr;q=0.9,en;q=0.5", "de-DE,de;q=0.8", "ja,en-US;q=0.7", "zh-CN,zh;q=0.9"}[rng.IntN(5)]},
		{"accept-encoding", "gzip, deflate, br, zstd"},
		{"referer", "https://shop.example/products?category=shoes&page=" + fmt.Sprint(rng.IntN(9)+1)},
		{"cookie", fmt.Sprintf("session=%s; _ga=GA1.2.%d.%d; theme=dark; consent={\"ads\":false,\"stats\":true}", token(rng, 32), rng.Int32(), rng.Int32())},
		{"sec-fetch-mode", "navigate"}, {"sec-ch-ua", `"Chromium";v="131", "Not_A Brand";v="24"`},
		{"x-request-id", fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Int64N(1<<48))},
	}
}

func token(rng *rand.Rand, n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

var benignRNG = rand.New(rand.NewPCG(2026, 11))

func browserGet(path string) httpExchange {
	return httpExchange{path: path, headers: browserHeaders(benignRNG), sourceAddress: "198.51.100.7:41000"}
}

func formPost(path string, v url.Values) httpExchange {
	x := browserGet(path)
	x.method = "POST"
	x.headers = append(x.headers, [2]string{"content-type", "application/x-www-form-urlencoded"})
	x.body = []byte(v.Encode())
	return x
}

func apiJSONPost(path string, v any) httpExchange {
	x := browserGet(path)
	x.method = "POST"
	x.headers = append(x.headers, [2]string{"content-type", "application/json"},
		[2]string{"authorization", "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + token(benignRNG, 80) + "." + token(benignRNG, 43)})
	x.body, _ = json.Marshal(v)
	return x
}

// password makes passwords as people choose them, special characters included.
func password(rng *rand.Rand) string {
	const specials = `!@#$%^&*()-_=+[]{};:'",.<>/?\|~` + "`"
	words := []string{"Summer", "dragon", "Paris", "monkey", "Correct", "horse", "battery", "staple", "Qwerty", "sunshine"}
	var b strings.Builder
	b.WriteString(words[rng.IntN(len(words))])
	for range 2 + rng.IntN(4) {
		if rng.IntN(2) == 0 {
			b.WriteByte(specials[rng.IntN(len(specials))])
		} else {
			fmt.Fprint(&b, rng.IntN(100))
		}
	}
	return b.String()
}

// apiRequests generates the benign traffic of a web shop and its API: n requests of
// varied shapes, using natural text for whatever a user types.
func apiRequests(n int, text []textSample) []benignRequest {
	rng := rand.New(rand.NewPCG(7, 11))
	say := func() string {
		if len(text) == 0 {
			return "Great product, would buy again."
		}
		s := text[rng.IntN(len(text))].text
		return s[:min(len(s), 80+rng.IntN(120))]
	}
	names := []string{"Ada Lovelace", "José Álvarez", "Zoë O'Neil", "李小龙", "Øyvind Nørgaard", "Renée D'Arcy-Smith", "Ngozi Okonjo-Iweala", "Jean-Luc Picard"}
	emails := []string{"ada@example.org", "jose.alvarez+shop@example.es", "zoe.oneil@mail.example.co.uk", "li@example.cn", "o.n@example.no", "renee_d@example.fr", "john+or@var.es", "admin@example.com"}
	var out []benignRequest
	for i := range n {
		var x httpExchange
		var kind string
		switch i % 10 {
		case 0:
			kind, x = "search", browserGet(fmt.Sprintf("/search?q=%s&sort=%s&page=%d", url.QueryEscape(say()), []string{"price_asc", "-created_at", "relevance", "name"}[rng.IntN(4)], rng.IntN(20)))
		case 1:
			kind, x = "login", formPost("/login", url.Values{"email": {emails[rng.IntN(len(emails))]}, "password": {password(rng)}, "remember": {"on"}, "csrf_token": {token(rng, 40)}})
		case 2:
			kind, x = "signup", formPost("/signup", url.Values{"name": {names[rng.IntN(len(names))]}, "email": {emails[rng.IntN(len(emails))]},
				"password": {password(rng)}, "phone": {fmt.Sprintf("+33 6 %02d %02d %02d %02d", rng.IntN(100), rng.IntN(100), rng.IntN(100), rng.IntN(100))}})
		case 3:
			kind, x = "order", apiJSONPost("/api/v1/orders", map[string]any{
				"customer": map[string]any{"name": names[rng.IntN(len(names))], "email": emails[rng.IntN(len(emails))]},
				"shipping": map[string]any{"street": fmt.Sprintf("%d Rue de la Paix", rng.IntN(200)), "city": "Paris", "zip": "75002", "country": "FR", "notes": say()},
				"items":    []any{map[string]any{"sku": fmt.Sprintf("SKU-%05d", rng.IntN(99999)), "qty": 1 + rng.IntN(3), "price": 19.99}},
				"coupon":   []any{nil, "WELCOME10", "BLACK-FRIDAY"}[rng.IntN(3)]})
		case 4:
			kind, x = "review", apiJSONPost(fmt.Sprintf("/api/v1/products/%d/reviews", rng.IntN(5000)), map[string]any{"rating": 1 + rng.IntN(5), "title": say()[:20], "body": say(), "recommend": rng.IntN(2) == 0})
		case 5:
			kind, x = "graphql", apiJSONPost("/graphql", map[string]any{"query": "query Product($id: ID!) { product(id: $id) { id name price reviews(first: 5) { edges { node { rating body } } } } }",
				"variables": map[string]any{"id": fmt.Sprint(rng.IntN(9999))}, "operationName": "Product"})
		case 6:
			kind, x = "page", browserGet(fmt.Sprintf("/products/%d-%s?utm_source=newsletter&utm_medium=email&utm_campaign=fall_sale_%d&ref=%s", rng.IntN(9999), []string{"running-shoes", "t-shirt", "coffee-maker", "desk-lamp"}[rng.IntN(4)], 2026, url.QueryEscape("https://shop.example/cart?step=2")))
		case 7:
			kind, x = "settings", apiJSONPost("/api/v1/me/settings", map[string]any{"display_name": names[rng.IntN(len(names))], "bio": say(), "website": "https://blog.example.org/about",
				"timezone": "Europe/Paris", "notifications": map[string]any{"email": true, "sms": false}, "avatar": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"})
		case 8:
			kind, x = "filter", browserGet(fmt.Sprintf("/api/v1/products?filter[price][gte]=%d&filter[price][lte]=%d&filter[brand]=%s&fields=id,name,price&include=images", rng.IntN(50), 50+rng.IntN(500), url.QueryEscape([]string{"Levi's", "H&M", "Dolce & Gabbana", "AT&T"}[rng.IntN(4)])))
		default:
			kind, x = "upload", multipartPost("/api/v1/uploads", []string{"IMG_2024-06-01 (1).jpg", "résumé final.pdf", "report_Q3.xlsx", "notes.txt"}[rng.IntN(4)], say())
		}
		out = append(out, benignRequest{kind: "api/" + kind, x: x})
	}
	return out
}

func multipartPost(path, filename, caption string) httpExchange {
	x := browserGet(path)
	x.method = "POST"
	const boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
	x.headers = append(x.headers, [2]string{"content-type", "multipart/form-data; boundary=" + boundary})
	var b bytes.Buffer
	fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\n%s\r\n", boundary, caption)
	fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=%q\r\nContent-Type: application/octet-stream\r\n\r\n\x89PNG\r\n\x1a\n\x00\x00\r\n--%s--\r\n", boundary, filename, boundary)
	x.body = b.Bytes()
	return x
}
