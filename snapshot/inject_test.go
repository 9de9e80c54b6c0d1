package snapshot

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"sigs.k8s.io/yaml"

	"github.com/wafplane/wafplane/discovery"
)

// injectCase is a file of testdata/inject/in: options and foreign gateways.
type injectCase struct {
	Options  InjectOptions              `json:"options"`
	Gateways []discovery.ForeignGateway `json:"gateways"`
}

type injectResult struct {
	Gateway string   `json:"gateway"`
	Errors  []string `json:"errors,omitempty"`
	Objects []Object `json:"objects,omitempty"`
}

func readInjectCase(t *testing.T, path string) injectCase {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c injectCase
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// TestInjectGolden renders testdata/inject/in/<case>.yaml and compares with
// testdata/inject/out/<case>.yaml; -update rewrites them and deletes stale ones.
func TestInjectGolden(t *testing.T) {
	goldenFiles(t, "testdata/inject", func(t *testing.T, raw []byte) []byte {
		var c injectCase
		if err := yaml.UnmarshalStrict(raw, &c); err != nil {
			t.Fatal(err)
		}
		var results []injectResult
		for _, g := range c.Gateways {
			objs, err := Inject(g, c.Options)
			r := injectResult{Gateway: g.Key(), Objects: objs}
			if err != nil {
				r.Errors = strings.Split(err.Error(), "\n")
			}
			results = append(results, r)
		}
		b, err := json.Marshal(map[string]any{"results": results})
		if err != nil {
			t.Fatal(err)
		}
		got, err := yaml.JSONToYAML(b)
		if err != nil {
			t.Fatal(err)
		}
		return got
	})
}

// TestEnvoyFilterPatchesDecode decodes every EnvoyFilter patch back into go-control-plane's
// protos as Istio does, validates them, and checks the ext_proc filter is the very
// configuration the control plane serves.
func TestEnvoyFilterPatchesDecode(t *testing.T) {
	for _, in := range []string{"testdata/inject/in/istio.yaml", "testdata/inject/in/istio-selector.yaml", "testdata/inject/in/istio-gateway.yaml", "testdata/inject/in/istio-sidecar.yaml"} {
		c := readInjectCase(t, in)
		for _, g := range c.Gateways {
			objs, err := Inject(g, c.Options)
			if err != nil || len(objs) != 1 {
				t.Fatalf("%s: %d objects, %v", g.Key(), len(objs), err)
			}
			patches := objs[0]["spec"].(Object)["configPatches"].([]any)
			if len(patches) != 2 {
				t.Fatalf("%s: %d patches, want cluster and filter", g.Key(), len(patches))
			}
			var cluster clusterv3.Cluster
			decodePatch(t, patches[0], "CLUSTER", &cluster)
			var filter hcmv3.HttpFilter
			decodePatch(t, patches[1], "HTTP_FILTER", &filter)
			if filter.GetName() != ExtProcFilterName {
				t.Errorf("%s: filter %q", g.Key(), filter.GetName())
			}
			var ep extprocfilterv3.ExternalProcessor
			if err := filter.GetTypedConfig().UnmarshalTo(&ep); err != nil {
				t.Fatal(err)
			}
			want := ExternalProcessor(g.GatewayKey(), discovery.Resolve(g.Protection, nil), cluster.GetName())
			if d := cmp.Diff(want, &ep, protocmp.Transform()); d != "" {
				t.Errorf("%s: ext_proc differs from the control plane's (-want +got):\n%s", g.Key(), d)
			}
			if got := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != cluster.GetName() {
				t.Errorf("%s: filter calls cluster %q, patch adds %q", g.Key(), got, cluster.GetName())
			}
			if c.Options.ProcessorTLS != (cluster.GetTransportSocket() != nil) {
				t.Errorf("%s: TLS %v but transport socket %v", g.Key(), c.Options.ProcessorTLS, cluster.GetTransportSocket())
			}
		}
	}
}

func decodePatch(t *testing.T, p any, applyTo string, into proto.Message) {
	t.Helper()
	patch := p.(map[string]any)
	if patch["applyTo"] != applyTo {
		t.Fatalf("applyTo %v, want %s", patch["applyTo"], applyTo)
	}
	raw, err := json.Marshal(patch["patch"].(map[string]any)["value"])
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s patch does not decode as %T: %v", applyTo, into, err)
	}
	if err := validateDeep(into); err != nil {
		t.Fatalf("%s patch: %v", applyTo, err)
	}
}

// TestInjectNamesFit: names and label values stay within Kubernetes' 63 characters.
func TestInjectNamesFit(t *testing.T) {
	long := strings.Repeat("g", 253)
	objs, err := Inject(discovery.ForeignGateway{Proxy: discovery.ProxyEnvoyGateway, Namespace: strings.Repeat("n", 63), Name: long},
		InjectOptions{ProcessorService: "wafplane", ProcessorNamespace: "wafplane-system", ProcessorPort: 18080})
	if err != nil || len(objs) != 2 {
		t.Fatalf("%d objects, %v", len(objs), err)
	}
	for _, o := range objs {
		md := o["metadata"].(Object)
		if n := md["name"].(string); len(n) > 63 {
			t.Errorf("%s name %q is %d long", o["kind"], n, len(n))
		}
		for k, v := range md["labels"].(map[string]any) {
			if len(v.(string)) > 63 {
				t.Errorf("%s label %s=%q is %d long", o["kind"], k, v, len(v.(string)))
			}
		}
	}
}
