package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wafplane/wafplane/discovery/kubernetes/kubetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// binary is the wafplane built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wafplane-integration")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "wafplane")
	// As the Makefile builds it: the commit and its date in the version.
	commit, _ := exec.Command("git", "rev-parse", "HEAD").Output()
	date, _ := exec.Command("git", "log", "-1", "--format=%cI").Output()
	ldflags := fmt.Sprintf("-X main.commit=%s -X main.date=%s", strings.TrimSpace(string(commit)), strings.TrimSpace(string(date)))
	build := exec.Command("go", "build", "-ldflags", ldflags, "-o", binary, "../cmd/wafplane")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building wafplane:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lockedBuffer collects the process's log for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// instance is a running `wafplane serve`.
type instance struct {
	gateways              string // the watched file
	xds, processor, admin string
	log                   *lockedBuffer
	conn                  *grpc.ClientConn
}

// start runs wafplane serve on free loopback ports with the gateways file (or, given none,
// wafplane alone with its embedded default) and waits until
// /readyz answers 200. The process is stopped with SIGTERM at cleanup and must exit 0.
func start(t *testing.T, gatewaysYAML string, extra ...string) *instance {
	t.Helper()
	in := &instance{gateways: filepath.Join(t.TempDir(), "gateways.yaml"), log: &lockedBuffer{}}
	args := []string{"serve", "--gateways", in.gateways}
	if gatewaysYAML == "" {
		args = nil // wafplane alone: serve with the embedded default
	} else {
		in.write(t, gatewaysYAML)
	}
	ports := kubetest.FreePorts(t, 4)
	procPort, healthPort := ports[1], ports[2]
	in.xds, in.processor, in.admin = "127.0.0.1:"+ports[0], "127.0.0.1:"+procPort, "127.0.0.1:"+ports[3]
	// A WAF budget of 1 s, not 10 ms: on a loaded two-core CI machine the first request's
	// WAF run can exceed 10 ms, and such a request continues by design; the budget has
	// tests of its own (processor).
	args = append(args, "--xds-address", in.xds, "--admin-address", in.admin, "--waf-timeout", "1s",
		"--host", "127.0.0.1", "--port", procPort, "--health-port", healthPort, "--log-level", "debug")
	cmd := exec.Command(binary, append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = in.log, in.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when the process has ended, with its error in exitErr
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		if in.conn != nil {
			in.conn.Close()
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			if exitErr != nil {
				t.Errorf("wafplane did not exit cleanly: %v\n%s", exitErr, in.log)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("wafplane did not stop within 15s of SIGTERM\n%s", in.log)
		}
		if t.Failed() {
			t.Logf("wafplane log:\n%s", in.log)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("wafplane exited: %v\n%s", exitErr, in.log)
		default:
		}
		if resp, err := http.Get("http://" + in.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("wafplane not ready within 60s\n%s", in.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err := grpc.NewClient(in.xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	in.conn = conn
	return in
}

// write replaces the gateways file the way editors do: a new file renamed over the old.
func (in *instance) write(t *testing.T, content string) {
	t.Helper()
	tmp := in.gateways + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, in.gateways); err != nil {
		t.Fatal(err)
	}
}

// get decodes an admin endpoint's JSON.
func (in *instance) get(t *testing.T, path string, v any) {
	t.Helper()
	body := in.getText(t, path)
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}

// getText fetches an admin path that must answer 200.
func (in *instance) getText(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + in.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", path, resp.Status, body)
	}
	return string(body)
}

func eventually(t testing.TB, what string, within time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recv waits for one value from a blocking receive, or fails the test after within.
func recv[T any](t testing.TB, within time.Duration, f func() (T, error)) T {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.v
	case <-time.After(within):
		t.Fatalf("nothing received within %s", within)
		var zero T
		return zero
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return c
}

// `wafplane version` names the commit and its date (Go's VCS stamp of the checkout the
// binary was built from; the Makefile passes them too).
func TestVersionNamesTheCommit(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("not built from a git checkout: no commit to expect")
	}
	if !strings.Contains(string(out), strings.TrimSpace(string(head))) || strings.Contains(string(out), "built unknown") {
		t.Errorf("version %q lacks commit %s or its date", out, head)
	}
}

// Started with a file that does not parse, wafplane serves nothing and is not ready, and
// says so; once the file parses it is.
func TestNotReadyUntilTheFileParses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateways.yaml")
	must(t, os.WriteFile(path, []byte("gateways: [\n"), 0o644))
	ports := kubetest.FreePorts(t, 4)
	admin := "127.0.0.1:" + ports[3]
	log := &lockedBuffer{}
	cmd := exec.Command(binary, "serve", "--gateways", path, "--xds-address", "127.0.0.1:"+ports[0], "--admin-address", admin,
		"--host", "127.0.0.1", "--port", ports[1], "--health-port", ports[2])
	cmd.Stdout, cmd.Stderr = log, log
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, "/readyz answers 503 naming xds", 30*time.Second, func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "xds")
	})
	if !strings.Contains(log.String(), "no gateways are served until it is fixed") {
		t.Errorf("the log does not say nothing is served:\n%s", log)
	}
	must(t, os.WriteFile(path+".tmp", []byte(shopGateways), 0o644))
	must(t, os.Rename(path+".tmp", path))
	eventually(t, "/readyz 200 once the file parses", 30*time.Second, func() bool {
		code, _ := readyz()
		return code == http.StatusOK
	})
	// Probes need no admin port: the health port answers /readyz too.
	resp, err := http.Get("http://127.0.0.1:" + ports[2] + "/readyz")
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"ok"`) {
		t.Errorf("health port /readyz: %d %s", resp.StatusCode, body)
	}
}
