package file

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wafplane/wafplane/discovery"
)

func TestDefaultIsTheDemoGateway(t *testing.T) {
	s := Default()
	if len(s.Gateways) != 1 {
		t.Fatalf("want one gateway, got %d", len(s.Gateways))
	}
	g := s.Gateways[0]
	if g.Key() != "default/demo" || g.Listeners[0].Port != 10000 || g.Protection.Mode != discovery.ModeBlock {
		t.Fatalf("unexpected default: %+v", g)
	}
	b := g.Routes[0].Rules[0].Backends[0]
	if b.Host != "127.0.0.1" || b.Port != 8080 {
		t.Fatalf("default backend %+v, want 127.0.0.1:8080", b)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestExampleFileIsValid(t *testing.T) {
	s, err := Load("../../deploy/examples/gateways.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Gateways) == 0 {
		t.Fatal("example holds no gateway")
	}
	for _, g := range s.Gateways {
		if err := g.Validate(); err != nil {
			t.Errorf("example gateway %s: %v", g.Key(), err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"gateways:\n- namespace: a\n  name: b\n  listners: []\n":            `unknown field "listners"`,
		"gateways:\n- {namespace: a, name: b}\n- {namespace: a, name: b}\n": "gateways[1]: a/b is already defined by gateways[0]",
		"gateways: [\n": "yaml",
		"gateways:\n- namespace: a\n  name: b\n  protection: {messageTimeout: x}": "messageTimeout",
		// In the file's words: the path, the line and column, what is expected there.
		"gateways:\n- namespace: a\n  name: b\n  listeners:\n  - {name: http, port: 80, prot: HTTP}\n":                   `gateways[0].listeners[0].prot (line 5, column 28): unknown field "prot"`,
		"gateways:\n- namespace: a\n  name: b\n  listeners:\n  - {name: http, port: 80}\n  - {name: h2, port: eighty}\n": `gateways[0].listeners[1].port (line 6, column 22): "eighty", want a whole number`,
		"gateways:\n- namespace: a\n  name: b\n  listeners: {name: x}\n":                                                 "gateways[0].listeners (line 4, column 14): a mapping, want a list",
		"gateways:\n- namespace: a\n  name: b\n  protection: {failOpen: maybe}\n":                                        `gateways[0].protection.failOpen (line 4, column 26): "maybe", want true or false`,
	}
	for in, want := range cases {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", in, err, want)
		}
	}
}

func TestBareOffIsOff(t *testing.T) {
	s, err := Parse([]byte("gateways:\n- namespace: a\n  name: b\n  protection: {mode: off}\n  routes:\n  - name: r\n    protection: {mode: off}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Gateways[0].Protection.Mode != discovery.ModeOff || s.Gateways[0].Routes[0].Protection.Mode != discovery.ModeOff {
		t.Fatalf("bare YAML off did not become mode off: %+v", s.Gateways[0])
	}
}

const one = "gateways:\n- namespace: a\n  name: one\n  listeners: [{name: http, port: 80}]\n"
const two = "gateways:\n- namespace: a\n  name: two\n  listeners: [{name: http, port: 80}]\n"

// A file with no gateways key is never "remove every gateway": that takes gateways: [].
func TestNoDocumentIsAnError(t *testing.T) {
	for _, in := range []string{"", "   \n", "# only a comment\n", "{}", "gateways:\n", "gateways: null\n", "---\n"} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrNoGateways) {
			t.Errorf("Parse(%q) = %v, want ErrNoGateways", in, err)
		}
	}
	st, err := Parse([]byte("gateways: []\n"))
	if err != nil || len(st.Gateways) != 0 {
		t.Errorf("gateways: [] = %v, %v", st, err)
	}
}

// A file written slowly, with pauses longer than the hold-off (`cat > file` from a pipe),
// is read once complete; an empty file keeps the last good gateways.
func TestSlowWriterAndEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.yaml")
	if err := os.WriteFile(path, []byte(one), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan discovery.Update, 16)
	go func() {
		_ = (&Source{Path: path, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(ctx, updates)
	}()
	if u := next(t, updates); u.Err != nil || u.State.Gateways[0].Name != "one" {
		t.Fatalf("first update %+v", u)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(two); i += len(two)/4 + 1 {
		if _, err := f.Write([]byte(two[i:min(i+len(two)/4+1, len(two))])); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	f.Close()
	if u := next(t, updates); u.Err != nil || len(u.State.Gateways) != 1 || u.State.Gateways[0].Name != "two" {
		t.Fatalf("after a slow write: %+v, want gateway two read once whole", u)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if u := next(t, updates); !errors.Is(u.Err, ErrNoGateways) || len(u.State.Gateways) != 1 || u.State.Gateways[0].Name != "two" {
		t.Fatalf("after emptying the file: %+v, want the error and gateway two kept", u)
	}
}

func next(t *testing.T, updates <-chan discovery.Update) discovery.Update {
	t.Helper()
	select {
	case u := <-updates:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no update within 5s")
		return discovery.Update{}
	}
}

// An edit is seen, a broken edit keeps the last good state and reports the error, a burst
// of edits becomes one update.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateways.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(one)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan discovery.Update)
	done := make(chan error, 1)
	src := &Source{Path: path, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go func() { done <- src.Run(ctx, updates) }()

	if u := next(t, updates); u.Err != nil || u.State.Gateways[0].Name != "one" {
		t.Fatalf("first update %+v", u)
	}
	write(two)
	if u := next(t, updates); u.Err != nil || u.State.Gateways[0].Name != "two" {
		t.Fatalf("after edit %+v", u)
	}
	write("gateways: [\n")
	u := next(t, updates)
	if u.Err == nil || u.State.Gateways[0].Name != "two" {
		t.Fatalf("broken edit: want an error and the last good state, got %+v", u)
	}
	for range 20 {
		write(one)
		write(two)
	}
	write(one)
	if u := next(t, updates); u.Err != nil || u.State.Gateways[0].Name != "one" {
		t.Fatalf("after burst %+v", u)
	}
	select {
	case u := <-updates:
		t.Fatalf("a burst of edits gave more than one update: %+v", u)
	case <-time.After(3 * HoldOff):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMissingFileAtStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan discovery.Update, 1)
	src := &Source{Path: filepath.Join(t.TempDir(), "absent.yaml"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go func() { _ = src.Run(ctx, updates) }()
	u := next(t, updates)
	if u.Err == nil || len(u.State.Gateways) != 0 {
		t.Fatalf("want an error and no gateways, got %+v", u)
	}
}
