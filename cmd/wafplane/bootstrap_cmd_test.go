package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/wafplane/wafplane/snapshot"
)

func runCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// The bootstrap parses as envoy.config.bootstrap.v3.Bootstrap, validates, and names the
// gateway as node cluster with every resource over delta ADS.
func TestBootstrapParsesAndValidates(t *testing.T) {
	for _, format := range []string{"yaml", "json"} {
		out, err := runCommand(t, "bootstrap", "--gateway", "shop/edge", "--xds-address", "wafplane.wafplane-system.svc:18000", "--node-id", "edge-0", "-o", format)
		if err != nil {
			t.Fatal(err)
		}
		raw := []byte(out)
		if format == "yaml" {
			if raw, err = yaml.YAMLToJSON(raw); err != nil {
				t.Fatal(err)
			}
		}
		b := &bootstrapv3.Bootstrap{}
		if err := protojson.Unmarshal(raw, b); err != nil {
			t.Fatalf("%s output does not parse as a Bootstrap: %v\n%s", format, err, out)
		}
		if err := b.ValidateAll(); err != nil {
			t.Fatal(err)
		}
		if b.Node.Cluster != "shop/edge" || b.Node.Id != "edge-0" {
			t.Errorf("node %v", b.Node)
		}
		ads := b.DynamicResources.AdsConfig
		if ads.ApiType != corev3.ApiConfigSource_DELTA_GRPC || ads.GrpcServices[0].GetEnvoyGrpc().ClusterName != snapshot.XDSCluster {
			t.Errorf("ads config %v", ads)
		}
		if b.DynamicResources.LdsConfig.GetAds() == nil || b.DynamicResources.CdsConfig.GetAds() == nil {
			t.Error("LDS and CDS must come over ADS")
		}
		c := b.StaticResources.Clusters[0]
		if c.GetType() != clusterv3.Cluster_STRICT_DNS || c.TypedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
			t.Errorf("xds cluster must resolve the name and speak HTTP/2: %v", c)
		}
		if b.Admin.Address.GetSocketAddress().GetPortValue() != 9901 {
			t.Errorf("admin %v", b.Admin)
		}
	}
}

func TestBootstrapBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"--gateway demo":            `--gateway "demo": want namespace/name`,
		"--gateway a/b/c":           "want namespace/name",
		"--xds-address nowhere":     `--xds-address "nowhere"`,
		"--admin-port 70000":        "--admin-port 70000",
		"--output toml":             `--output "toml"`,
		"--xds-address 127.0.0.1:0": "want host:port",
	} {
		_, err := runCommand(t, append([]string{"bootstrap"}, strings.Fields(args)...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bootstrap %s: got %v, want %q", args, err, want)
		}
	}
}

func TestTranslateCommand(t *testing.T) {
	out, err := runCommand(t, "translate")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "gateway: default/demo") || !strings.Contains(out, "envoy.filters.http.ext_proc") {
		t.Fatalf("translate of the default:\n%s", out)
	}
	// One bad gateway: the good one is printed, the bad one is the error.
	out, err = runCommand(t, "translate", "-f", "../../snapshot/testdata/in/invalid.yaml", "-o", "json")
	if err == nil || !strings.Contains(err.Error(), "gateway default/broken") {
		t.Fatalf("want the broken gateway's error, got %v", err)
	}
	if !strings.Contains(out, `"gateway": "default/good"`) || strings.Contains(out, `"gateway": "default/broken"`) {
		t.Fatalf("want only the good gateway printed:\n%s", out)
	}
	if _, err := runCommand(t, "translate", "-f", "does-not-exist.yaml"); err == nil {
		t.Fatal("a missing file must fail")
	}
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, []byte("# nothing yet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runCommand(t, "translate", "-f", empty); err == nil || !strings.Contains(err.Error(), `no "gateways" key`) {
		t.Fatalf("an empty file: %v, want an error saying it holds no gateways", err)
	}
}

func TestServeRejectsBadSettings(t *testing.T) {
	for args, want := range map[string]string{
		"--source consul": `--source "consul"`,
		"--source kubernetes --kubeconfig /nonexistent/config": "--kubeconfig",
		"--processor-address nowhere":                          "--processor-address",
		"--mode audit":                                         "--mode",
		"--processor-mtls":                                     "--processor-mtls: needs xDS over mTLS",
		"--xds-tls --xds-ca-dir /proc/no/such/dir":             "--xds-ca-dir",
	} {
		_, err := runCommand(t, append([]string{"serve"}, strings.Fields(args)...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("serve %s: got %v, want %q", args, err, want)
		}
	}
}

// Sidecar mode's settings are refused, each naming its flag, before wafplane talks to the
// cluster.
func TestServeRejectsBadSidecarSettings(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "--source kubernetes --kubeconfig " + kubeconfig + " --xds-address 127.0.0.1:0 --inject --inject-mode sidecar "
	for args, want := range map[string]string{
		"--source kubernetes --kubeconfig " + kubeconfig + " --xds-address 127.0.0.1:0 --inject-mode sidecar": "--inject-mode=sidecar: needs --inject",
		base + "--inject-mode inline":                              `--inject-mode "inline"`,
		base + "--inject-sidecar-port 0":                           "--inject-sidecar-port 0",
		base + "--inject-sidecar-health-port 8080":                 "healthPort 8080",
		base + "--inject-sidecar-body-parsing-size-limit lots":     "--inject-sidecar-body-parsing-size-limit",
		base + "--inject-sidecar-body-parsing-size-limit -2":       "bodyParsingSizeLimit -2",
		base + "--inject-sidecar-memory-limit 1GB":                 "resources.limits.memory",
		base + "--inject-sidecar-image=":                           "--inject-sidecar-image",
		base + "--webhook-cert-dir /x --webhook-url http://x/hook": "--webhook-url",
	} {
		_, err := runCommand(t, append([]string{"serve"}, strings.Fields(args)...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("serve %s: got %v, want %q", args, err, want)
		}
	}
}
