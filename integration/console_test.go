package integration

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	sotwclient "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/wafplane/wafplane/processor"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// chromium finds the headless browser `make test` installs (Debian's chromium).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on this machine: `make test` installs Debian's (hack/browser.sh)")
	return ""
}

// The console as a person sees it, in a real browser: wafplane serve with its embedded
// default, a test Envoy on ADS, attacks and benign requests through the processor.
func TestConsoleInABrowser(t *testing.T) {
	in := start(t, "")
	const payload = "<img src=x onerror=alert(1)>"

	envoy := sotwclient.NewADSClient(ctx(t), &corev3.Node{Id: "edge-console", Cluster: "default/demo"}, resourcev3.ListenerType)
	if err := envoy.InitConnect(in.conn); err != nil {
		t.Fatal(err)
	}
	recv(t, 5*time.Second, envoy.Fetch)
	if err := envoy.Ack(); err != nil {
		t.Fatal(err)
	}

	proc, err := grpc.NewClient(in.processor, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	md := metadata.Pairs(processor.MetadataGateway, "default/demo", processor.MetadataRoute, "default/demo/http/0")
	send := func(attacks int) {
		for range 3 {
			if sendGET(t, proc, md, "/products?page=2") != 0 {
				t.Fatal("a benign request was blocked")
			}
		}
		for range attacks {
			if sendGET(t, proc, md, "/search?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E") != 403 {
				t.Fatal("the XSS was not blocked")
			}
		}
	}
	send(2)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 2200))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 90*time.Second)
	defer cancelTimeout()
	var dialogs atomic.Int32
	dismiss := make(chan struct{}, 16)
	if err := chromedp.Listen(bctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
			select {
			case dismiss <- struct{}{}:
			default:
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go func() { // ends with the browser's context; the channel is never closed under Listen
		for {
			select {
			case <-dismiss:
				// A dialog would block the page.
				_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			case <-bctx.Done():
				return
			}
		}
	}()

	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v\nwafplane log:\n%s", what, err, in.log)
		}
	}
	eval := func(what, js string, v any) {
		t.Helper()
		var err error
		switch p := v.(type) {
		case *bool:
			*p, err = chromedp.Run(bctx, chromedp.Evaluate[bool](js))
		case *int:
			*p, err = chromedp.Run(bctx, chromedp.Evaluate[int](js))
		case *[]string:
			*p, err = chromedp.Run(bctx, chromedp.Evaluate[[]string](js))
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shots := t.TempDir()
	screenshot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		checkNotBlank(t, name, buf)
		if err := os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
		if dst := os.Getenv("WAFPLANE_CONSOLE_SCREENSHOT"); dst != "" && name == "overview" {
			_ = os.WriteFile(dst, buf, 0o644) // the README's picture (docs/console.png)
		}
	}
	text := func(sel string) string { // read in the page, like clicks (below)
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.textContent ?? ""`, sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	waitFor := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var ok bool
			eval(what, js, &ok)
			if ok {
				return
			}
			if time.Now().After(deadline) {
				body, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
				t.Fatalf("console: %s not seen within 20s; the page shows:\n%s", what, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	do("open the console", chromedp.Navigate("http://"+in.admin+"/"))
	waitFor("the demo gateway", `!!document.querySelector('[data-testid=gateways] tr[data-gateway="default/demo"]')`)
	if row := text(`[data-testid=gateways] tr[data-gateway="default/demo"]`); !strings.Contains(row, "embedded default") || !strings.Contains(row, "block") {
		t.Errorf("gateway row %q: want its source and mode", row)
	}
	waitFor("the test Envoy in sync", `document.querySelector('tr[data-node="edge-console"]')?.dataset.state === "in sync"`)
	waitFor("blocked requests on the chart", `+document.querySelector('[data-testid=total-blocked]').textContent >= 2 && !!document.querySelector('#chart rect.blocked')`)
	var rules []string
	eval("top rules", `[...document.querySelectorAll('[data-testid=top-rules] a')].map(a => a.dataset.key)`, &rules)
	var events struct {
		Events []struct{ Rules []struct{ ID string } }
	}
	in.get(t, "/events?limit=1", &events)
	if len(rules) == 0 || len(events.Events) == 0 || rules[0] != events.Events[0].Rules[0].ID {
		t.Fatalf("top rules %v, want the attack's rule first (events %+v)", rules, events)
	}
	waitFor("the payload shown as text in the events", fmt.Sprintf(
		`[...document.querySelectorAll('[data-testid=events] code')].some(c => c.textContent === %q)`, payload))
	var injected int
	eval("count markup in the events", `document.querySelectorAll('[data-testid=events] img, [data-testid=events] script').length`, &injected)
	if injected != 0 {
		t.Fatalf("%d elements were made of an event's payload", injected)
	}
	screenshot("overview")

	// The top rule links to its events; an event opens its detail, as text.
	// Clicks run in the page: the console re-renders every 3 s, so a node found by one
	// DevTools call may be gone by the next.
	click := func(what, sel string) {
		t.Helper()
		var ok bool
		eval(what, fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true })()`, sel), &ok)
		if !ok {
			t.Fatalf("%s: nothing matches %s", what, sel)
		}
	}
	click("follow the top rule", `[data-testid=top-rules] a`)
	waitFor("the events of that rule", fmt.Sprintf(`document.querySelector('#event-filter')?.textContent.includes(%q)`, rules[0]))
	click("open an event", `[data-testid=events] tbody tr[data-event]`)
	waitFor("the event detail", fmt.Sprintf(`document.querySelector('[data-testid=event-detail]').textContent.includes(%q)`, payload))
	screenshot("event")

	// More attacks: the blocked count rises. A NACK: the Envoy is shown out of sync, with it.
	before, _ := strconv.Atoi(text(`[data-testid=total-blocked]`))
	send(3)
	waitFor("the blocked count rising", fmt.Sprintf(`+document.querySelector('[data-testid=total-blocked]').textContent >= %d`, before+3))
	// The Envoy restarts and refuses the listener this time.
	const nack = "listener default/demo/http: rejected by the console test"
	again := sotwclient.NewADSClient(ctx(t), &corev3.Node{Id: "edge-console", Cluster: "default/demo"}, resourcev3.ListenerType)
	if err := again.InitConnect(in.conn); err != nil {
		t.Fatal(err)
	}
	recv(t, 5*time.Second, again.Fetch)
	if err := again.Nack(nack); err != nil {
		t.Fatal(err)
	}
	waitFor("the NACK", fmt.Sprintf(`document.querySelector('tr[data-node="edge-console"]')?.textContent.includes(%q)`, nack))
	if row := text(`tr[data-node="edge-console"]`); !strings.Contains(row, "out of sync") {
		t.Errorf("a node whose last answer is a NACK is shown as %q", row)
	}
	screenshot("nack")

	if n := dialogs.Load(); n != 0 {
		t.Fatalf("%d JavaScript dialogs opened: an event's payload ran", n)
	}
	// The control: a dialog the test opens itself is seen, so none above means none ran.
	var started bool
	eval("open a control dialog", `(() => { setTimeout(() => alert("control"), 0); return true })()`, &started)
	for deadline := time.Now().Add(10 * time.Second); dialogs.Load() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the control dialog was not seen: the dialog check sees nothing")
		}
	}
}

// checkNotBlank fails when a screenshot is one color: the page did not render.
func checkNotBlank(t *testing.T, name string, b []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	colors := map[uint32]bool{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += 7 {
		for x := r.Min.X; x < r.Max.X; x += 7 {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			colors[cr>>8<<16|cg>>8<<8|cb>>8] = true
		}
	}
	if len(colors) < 8 {
		t.Fatalf("screenshot %s is blank (%d colors)", name, len(colors))
	}
}
