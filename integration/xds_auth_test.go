package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/wafplane/wafplane/discovery/kubernetes"
	"github.com/wafplane/wafplane/discovery/kubernetes/kubetest"
	"github.com/wafplane/wafplane/xds/pki"
	"github.com/wafplane/wafplane/xds/xdstest"
)

// TestKubernetesXDSCertificates: with mTLS on xDS, wafplane keeps its CA in a Secret,
// issues each provisioned Envoy Deployment a client certificate naming its Gateway in a
// Secret it mounts, and its bootstrap uses it; that certificate gets the Gateway's
// snapshot and nothing else does.
func TestKubernetesXDSCertificates(t *testing.T) {
	env, kubeconfig := kubeEnv(t)
	w := runWafplane(t, kubeconfig, "--xds-tls=true")
	kc := env.Clientset()
	gc, err := gwclient.NewForConfig(env.Admin)
	must(t, err)
	ctx := context.Background()
	namespace(t, kc, "shop")

	caSecret, err := kc.CoreV1().Secrets("wafplane-system").Get(ctx, "wafplane-ca", metav1.GetOptions{})
	must(t, err)
	ca, err := pki.Parse(caSecret.Data["ca.crt"], caSecret.Data["ca.key"])
	must(t, err)

	_, err = gc.GatewayV1().Gateways("shop").Create(ctx, &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "shop"},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: "wafplane", Listeners: []gwapiv1.Listener{{Name: "http", Port: 8080, Protocol: gwapiv1.HTTPProtocolType}}}},
		metav1.CreateOptions{})
	must(t, err)

	var secret *corev1.Secret
	eventually(t, "the client certificate Secret", 30*time.Second, func() bool {
		secret, err = kc.CoreV1().Secrets("shop").Get(ctx, "wafplane-edge-xds", metav1.GetOptions{})
		return err == nil
	})
	certs, err := pki.ParseCertificates(secret.Data["tls.crt"])
	must(t, err)
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the client certificate does not verify against the CA Secret: %v", err)
	}
	if g, ok := pki.GatewayOf(certs[0]); !ok || g != "shop/edge" {
		t.Fatalf("the client certificate names %q", g)
	}

	eventually(t, "the provisioned Deployment", 30*time.Second, func() bool {
		_, err := kc.AppsV1().Deployments("shop").Get(ctx, "wafplane-edge", metav1.GetOptions{})
		return err == nil
	})
	dep, err := kc.AppsV1().Deployments("shop").Get(ctx, "wafplane-edge", metav1.GetOptions{})
	must(t, err)
	mounted := false
	for _, v := range dep.Spec.Template.Spec.Volumes {
		mounted = mounted || v.Secret != nil && v.Secret.SecretName == "wafplane-edge-xds"
	}
	for _, m := range dep.Spec.Template.Spec.Containers[0].VolumeMounts {
		mounted = mounted && (m.Name != "xds-cert" || m.MountPath == "/etc/wafplane/xds")
	}
	if !mounted {
		t.Fatalf("the Deployment does not mount the certificate Secret at /etc/wafplane/xds: %+v", dep.Spec.Template.Spec)
	}
	cm, err := kc.CoreV1().ConfigMaps("shop").Get(ctx, "wafplane-edge", metav1.GetOptions{})
	must(t, err)
	js, err := yaml.YAMLToJSON([]byte(cm.Data["bootstrap.yaml"]))
	must(t, err)
	var b bootstrapv3.Bootstrap
	must(t, protojson.Unmarshal(js, &b))
	must(t, b.ValidateAll())
	var up tlsv3.UpstreamTlsContext
	must(t, b.GetStaticResources().GetClusters()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&up))
	if got := up.GetCommonTlsContext().GetTlsCertificates()[0].GetCertificateChain().GetFilename(); got != "/etc/wafplane/xds/tls.crt" {
		t.Errorf("bootstrap client certificate %q", got)
	}
	if got := up.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename(); got != "/etc/wafplane/xds/ca.crt" {
		t.Errorf("bootstrap CA %q", got)
	}

	// The xDS server as the Envoy reaches it: through the Service's name.
	pair, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"])
	must(t, err)
	dialXDS := func(certs []tls.Certificate) *grpc.ClientConn {
		return dialMTLS(t, w.xds, ca.Pool(), certs, "wafplane.wafplane-system.svc.cluster.local")
	}
	listeners := func(conn *grpc.ClientConn, cluster string) ([]string, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return xdstest.FirstNames(cctx, conn, &corev3.Node{Id: "edge-0", Cluster: cluster}, resourcev3.ListenerType)
	}
	names, err := listeners(dialXDS([]tls.Certificate{pair}), "shop/edge")
	if err != nil || len(names) == 0 || !strings.HasPrefix(names[0], "shop/edge/") {
		t.Fatalf("with the Gateway's certificate: %v %v", names, err)
	}
	if names, err := listeners(dialXDS(nil), "shop/edge"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("without a certificate: %v %v, want PermissionDenied", names, err)
	}
	if names, err := listeners(dialXDS([]tls.Certificate{pair}), "shop/other"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("another node cluster: %v %v, want PermissionDenied", names, err)
	}
	if v := w.metric(t, `wafplane_xds_rejected_streams_total{reason="no_certificate"}`); v != "1" {
		t.Errorf("rejected{no_certificate} = %q", v)
	}

	// A listener certificate's private key goes to the gateway's Envoys over SDS, and
	// nowhere else: not /snapshots, not /nodes, not the log.
	siteCert, siteKey, err := ca.IssueGateway("shop/site", time.Now()) // any valid pair
	must(t, err)
	keyMaterial := strings.Split(string(siteKey), "\n")[1] // a line of the key's body
	_, err = kc.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "site-cert", Namespace: "shop"},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": siteCert, "tls.key": siteKey}}, metav1.CreateOptions{})
	must(t, err)
	_, err = gc.GatewayV1().Gateways("shop").Create(ctx, &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "secure", Namespace: "shop"},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: "wafplane", Listeners: []gwapiv1.Listener{{Name: "https", Port: 8443, Protocol: gwapiv1.HTTPSProtocolType,
			TLS: &gwapiv1.ListenerTLSConfig{CertificateRefs: []gwapiv1.SecretObjectReference{{Name: "site-cert"}}}}}}}, metav1.CreateOptions{})
	must(t, err)
	eventually(t, "shop/secure published", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + w.admin + "/snapshots/shop/secure")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "shop/secure/https")
	})
	for _, path := range []string{"/snapshots", "/snapshots/shop/secure", "/nodes"} {
		if strings.Contains(w.admin200(t, path), keyMaterial) {
			t.Errorf("%s shows the private key", path)
		}
	}
	if strings.Contains(w.log.String(), keyMaterial) {
		t.Error("the log shows the private key")
	}
}

// bootstrapWithCert runs `wafplane bootstrap --cert-dir` for default/demo against the CA
// of the serve instance and returns the bootstrap, the client certificate and the CA it
// wrote, read back through the paths the bootstrap names.
func bootstrapWithCert(t *testing.T, in *instance, caDir, certDir string) (*bootstrapv3.Bootstrap, tls.Certificate, *x509.CertPool) {
	t.Helper()
	out, err := exec.Command(binary, "bootstrap", "--gateway", "default/demo", "--xds-address", in.xds,
		"--cert-dir", certDir, "--ca-dir", caDir, "-o", "json").Output()
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	var b bootstrapv3.Bootstrap
	must(t, protojson.Unmarshal(out, &b))
	must(t, b.ValidateAll())
	var up tlsv3.UpstreamTlsContext
	must(t, b.GetStaticResources().GetClusters()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&up))
	chain := up.GetCommonTlsContext().GetTlsCertificates()[0]
	certPEM, err := os.ReadFile(chain.GetCertificateChain().GetFilename())
	must(t, err)
	keyPEM, err := os.ReadFile(chain.GetPrivateKey().GetFilename())
	must(t, err)
	caPEM, err := os.ReadFile(up.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename())
	must(t, err)
	if st, err := os.Stat(chain.GetPrivateKey().GetFilename()); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v %v", st.Mode(), err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	must(t, err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return &b, pair, roots
}

// dialMTLS connects trusting roots, with the client certificates given (none: nil).
func dialMTLS(t *testing.T, addr string, roots *x509.CertPool, certs []tls.Certificate, serverName string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, Certificates: certs, ServerName: serverName})))
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestBootstrapCertDir: outside Kubernetes, serve keeps its CA in a directory and
// `wafplane bootstrap --cert-dir` issues a gateway's client certificate from it; with it
// the gateway's snapshot comes over mTLS, and the bootstrap points at those files.
func TestBootstrapCertDir(t *testing.T) {
	dir := t.TempDir()
	in := start(t, "", "--xds-tls=true", "--xds-ca-dir", dir+"/ca")
	_, pair, roots := bootstrapWithCert(t, in, dir+"/ca", dir+"/envoy")
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := xdstest.NewDelta(cctx, dialMTLS(t, in.xds, roots, []tls.Certificate{pair}, ""), &corev3.Node{Id: "demo-0", Cluster: "default/demo"})
	must(t, err)
	must(t, d.Subscribe(resourcev3.ListenerType))
	r, err := d.Recv()
	if err != nil || len(r.Resources) == 0 {
		t.Fatalf("listeners over mTLS: %v %v", r, err)
	}
}

// TestProcessorMTLS: with --processor-mtls only an Envoy holding a gateway's certificate
// may use the processor, and only for that gateway; the processor cluster served over xDS
// presents the certificate the bootstrap defines as a static secret.
func TestProcessorMTLS(t *testing.T) {
	dir := t.TempDir()
	in := start(t, "", "--xds-tls=true", "--xds-ca-dir", dir+"/ca", "--processor-mtls")
	b, pair, roots := bootstrapWithCert(t, in, dir+"/ca", dir+"/envoy")
	if names := []string{b.GetStaticResources().GetSecrets()[0].GetName(), b.GetStaticResources().GetSecrets()[1].GetName()}; names[0] != "wafplane-client-certificate" || names[1] != "wafplane-ca" {
		t.Fatalf("bootstrap static secrets %v", names)
	}
	dialTLS := func(addr string, certs []tls.Certificate) *grpc.ClientConn {
		return dialMTLS(t, addr, roots, certs, "")
	}

	// The processor cluster, as the gateway's Envoy gets it.
	d, err := xdstest.NewDelta(ctx(t), dialTLS(in.xds, []tls.Certificate{pair}), &corev3.Node{Id: "demo-0", Cluster: "default/demo"})
	must(t, err)
	must(t, d.Subscribe(resourcev3.ClusterType))
	var up tlsv3.UpstreamTlsContext
	for found := false; !found; {
		r := recv(t, 10*time.Second, d.Recv)
		must(t, d.Ack(r))
		for _, res := range r.Resources {
			var c clusterv3.Cluster
			must(t, res.Resource.UnmarshalTo(&c))
			if c.GetName() == "wafplane-processor" {
				must(t, c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up))
				found = true
			}
		}
	}
	if sds := up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs(); len(sds) != 1 || sds[0].GetName() != "wafplane-client-certificate" {
		t.Fatalf("processor cluster TLS %v", &up)
	}

	if code := sendAttack(t, dialTLS(in.processor, []tls.Certificate{pair}), metadata.Pairs("x-wafplane-gateway", "default/demo")); code != 403 {
		t.Errorf("the gateway's Envoy: %d, want 403", code)
	}
	stream, err := extprocv3.NewExternalProcessorClient(dialTLS(in.processor, []tls.Certificate{pair})).Process(
		metadata.NewOutgoingContext(ctx(t), metadata.Pairs("x-wafplane-gateway", "other/gateway", "x-wafplane-mode", "off")))
	must(t, err)
	_ = stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{EndOfStream: true}}})
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Errorf("speaking for another gateway: %v, want PermissionDenied", err)
	}
	noCert, err := extprocv3.NewExternalProcessorClient(dialTLS(in.processor, nil)).Process(ctx(t))
	if err == nil {
		_ = noCert.Send(&extprocv3.ProcessingRequest{})
		_, err = noCert.Recv()
	}
	if err == nil {
		t.Error("a client without a certificate was served")
	}
}

// The CA Secret is made on the first start, and a CA near its end is replaced, the old one
// staying in the bundle (trusted) while it is valid.
func TestCAStoreMakesAndRotates(t *testing.T) {
	env := kubetest.Start(t)
	kc := env.Clientset()
	namespace(t, kc, "wafplane-system")
	ctx := context.Background()
	store := &kubernetes.CAStore{Client: kc, Namespace: "wafplane-system", Name: "wafplane-ca", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	first, err := store.Load(ctx)
	must(t, err)
	again, err := store.Load(ctx)
	must(t, err)
	if again.Fingerprint() != first.Fingerprint() {
		t.Fatal("a second load made another CA")
	}
	// Replace it with a CA that has less than pki.RotateBefore left.
	old, err := pki.New(time.Now().Add(-pki.CAValidity + pki.RotateBefore/2))
	must(t, err)
	key, err := old.KeyPEM()
	must(t, err)
	sec, err := kc.CoreV1().Secrets("wafplane-system").Get(ctx, "wafplane-ca", metav1.GetOptions{})
	must(t, err)
	sec.Data = map[string][]byte{"ca.crt": old.BundlePEM(), "ca.key": key}
	_, err = kc.CoreV1().Secrets("wafplane-system").Update(ctx, sec, metav1.UpdateOptions{})
	must(t, err)
	rotated, err := store.Load(ctx)
	must(t, err)
	if rotated.Fingerprint() == old.Fingerprint() || len(rotated.Bundle) != 2 || !rotated.Bundle[1].Equal(old.Cert) {
		t.Fatalf("after rotation: %d certificates in the bundle, current %s", len(rotated.Bundle), rotated.Fingerprint())
	}
	stored, err := kc.CoreV1().Secrets("wafplane-system").Get(ctx, "wafplane-ca", metav1.GetOptions{})
	must(t, err)
	back, err := pki.Parse(stored.Data["ca.crt"], stored.Data["ca.key"])
	must(t, err)
	if back.Fingerprint() != rotated.Fingerprint() || store.Current().Fingerprint() != rotated.Fingerprint() {
		t.Error("the rotated CA was not stored or is not the current one")
	}
}
