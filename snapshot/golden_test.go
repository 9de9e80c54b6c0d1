package snapshot

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/google/go-cmp/cmp"

	"github.com/wafplane/wafplane/discovery/file"
)

var update = flag.Bool("update", false, "rewrite testdata/out from testdata/in")

// goldenResult is one gateway of a golden file: its resources or its error.
type goldenResult struct {
	Gateway string   `json:"gateway"`
	Errors  []string `json:"errors,omitempty"`
	*Dump   `json:",inline"`
}

func render(t *testing.T, in []byte) []byte {
	t.Helper()
	state, err := file.Parse(in)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var out []json.RawMessage
	for _, r := range Translate(state, Options{}) {
		if r.Err != nil {
			b, _ := json.Marshal(goldenResult{Gateway: r.Gateway, Errors: strings.Split(r.Err.Error(), "\n")})
			out = append(out, b)
			continue
		}
		d, err := r.Resources.Dump()
		if err != nil {
			t.Fatalf("dump %s: %v", r.Gateway, err)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	b, err := json.Marshal(map[string][]json.RawMessage{"results": out})
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// TestGolden translates testdata/in/<case>.yaml and compares with testdata/out/<case>.yaml.
// go test ./snapshot -update rewrites the goldens and deletes stale ones.
func TestGolden(t *testing.T) {
	goldenFiles(t, "testdata", render)
}

// goldenFiles runs render on every dir/in/<case>.yaml and compares the output with
// dir/out/<case>.yaml; -update rewrites the outputs and deletes those without an input.
func goldenFiles(t *testing.T, dir string, render func(*testing.T, []byte) []byte) {
	inputs, err := filepath.Glob(filepath.Join(dir, "in", "*.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs in %s/in: %v", dir, err)
	}
	want := map[string]bool{}
	for _, in := range inputs {
		name := filepath.Base(in)
		want[name] = true
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := render(t, raw)
			out := filepath.Join(dir, "out", name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			golden, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run go test ./snapshot -update)", err)
			}
			if diff := cmp.Diff(string(golden), string(got)); diff != "" {
				t.Errorf("%s differs (-golden +got; go test ./snapshot -update rewrites it):\n%s", out, diff)
			}
		})
	}
	outputs, _ := filepath.Glob(filepath.Join(dir, "out", "*.yaml"))
	for _, out := range outputs {
		if want[filepath.Base(out)] {
			continue
		}
		if *update {
			if err := os.Remove(out); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s has no input (run go test ./snapshot -update to delete it)", out)
	}
}
