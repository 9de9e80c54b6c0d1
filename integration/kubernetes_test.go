package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // in the bootstrap
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/wafplane/wafplane/discovery/kubernetes/kubetest"
	"github.com/wafplane/wafplane/xds/pki"
	"github.com/wafplane/wafplane/xds/xdstest"
)

// kubeInstance is wafplane serve --source=kubernetes against a real kube-apiserver, with
// the token of the ServiceAccount that deploy/kubernetes binds to its ClusterRole.
type kubeInstance struct {
	env  *kubetest.Env
	kc   kubernetes.Interface
	gc   gwclient.Interface
	xds  *grpc.ClientConn
	log  *lockedBuffer
	proc string
	pid  int
}

func startKube(t testing.TB) *kubeInstance {
	t.Helper()
	env, kubeconfig := kubeEnv(t)
	w := runWafplane(t, kubeconfig)
	in := &kubeInstance{env: env, kc: env.Clientset(), log: w.log, proc: w.proc, pid: w.cmd.Process.Pid}
	gc, err := gwclient.NewForConfig(env.Admin)
	must(t, err)
	in.gc = gc
	conn, err := grpc.NewClient(w.xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	in.xds = conn
	return in
}

// kubeEnv starts a kube-apiserver with deploy/kubernetes applied and returns a kubeconfig
// with the token of wafplane's ServiceAccount, so that wafplane has exactly its RBAC.
func kubeEnv(t testing.TB) (*kubetest.Env, string) {
	t.Helper()
	env := kubetest.Start(t)
	for _, f := range []string{"namespace.yaml", "rbac.yaml", "wafplane.yaml", "gatewayclass.yaml", "networkpolicy.yaml"} {
		raw, err := os.ReadFile(filepath.Join("..", "deploy", "kubernetes", f))
		must(t, err)
		env.Apply(raw)
	}
	return env, env.Kubeconfig(env.ServiceAccount("wafplane-system", "wafplane"))
}

// wafplaneProc is one running `wafplane serve --source=kubernetes`.
type wafplaneProc struct {
	cmd              *exec.Cmd
	log              *lockedBuffer
	xds, proc, admin string
	exited           chan struct{}
}

// runWafplane starts wafplane and waits until it is ready; it is killed at cleanup.
func runWafplane(t testing.TB, kubeconfig string, args ...string) *wafplaneProc {
	t.Helper()
	ports := kubetest.FreePorts(t, 3)
	w := &wafplaneProc{log: &lockedBuffer{}, xds: "127.0.0.1:" + ports[0], proc: "127.0.0.1:" + ports[1],
		admin: "127.0.0.1:" + ports[2], exited: make(chan struct{})}
	w.cmd = exec.Command(binary, append([]string{"serve", "--source", "kubernetes", "--kubeconfig", kubeconfig,
		"--namespace", "wafplane-system", "--xds-address", w.xds, "--admin-address", w.admin,
		"--host", "127.0.0.1", "--port", ports[1], "--health-port", "0", "--log-level", "debug", "--waf-timeout", "1s"}, args...)...)
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	must(t, w.cmd.Start())
	go func() { _ = w.cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.exited
		if t.Failed() {
			t.Logf("wafplane %s log:\n%s", w.admin, w.log)
		}
	})
	eventually(t, "wafplane ready", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + w.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return w
}

// stop ends wafplane as Kubernetes would (SIGTERM), so that it releases its Lease.
func (w *wafplaneProc) stop(t testing.TB) {
	t.Helper()
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("wafplane %s did not stop within 20s of SIGTERM", w.admin)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func namespace(t testing.TB, kc kubernetes.Interface, name string) {
	t.Helper()
	_, err := kc.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	must(t, err)
}

// backend creates a Service (port 80 → 8080) with one ready endpoint.
func backend(t testing.TB, kc kubernetes.Interface, ns, name, ip string) {
	t.Helper()
	ctx := context.Background()
	_, err := kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}, metav1.CreateOptions{})
	must(t, err)
	_, err = kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
	}, metav1.CreateOptions{})
	must(t, err)
}

func ptr[T any](v T) *T { return &v }

func httpRoute(ns, name, gateway, backendNS, backendName string) *gwapiv1.HTTPRoute {
	ref := gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{BackendObjectReference: gwapiv1.BackendObjectReference{
		Name: gwapiv1.ObjectName(backendName), Port: ptr(gwapiv1.PortNumber(80))}}}
	if backendNS != ns {
		ref.Namespace = ptr(gwapiv1.Namespace(backendNS))
	}
	return &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: gwapiv1.HTTPRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: []gwapiv1.ParentReference{{Name: gwapiv1.ObjectName(gateway)}}},
			Rules: []gwapiv1.HTTPRouteRule{{
				Matches:     []gwapiv1.HTTPRouteMatch{{Path: &gwapiv1.HTTPPathMatch{Type: ptr(gwapiv1.PathMatchPathPrefix), Value: ptr("/" + name)}}},
				BackendRefs: []gwapiv1.HTTPBackendRef{ref},
			}},
		}}
}

func condition(conds []metav1.Condition, typ string) *metav1.Condition {
	return meta.FindStatusCondition(conds, typ)
}

func routeCondition(t *testing.T, gc gwclient.Interface, ns, name, typ string) *metav1.Condition {
	r, err := gc.GatewayV1().HTTPRoutes(ns).Get(context.Background(), name, metav1.GetOptions{})
	must(t, err)
	if len(r.Status.Parents) == 0 {
		return nil
	}
	return condition(r.Status.Parents[0].Conditions, typ)
}

// recvUntil receives (and ACKs) responses of a type until one satisfies ok.
func recvUntil(t *testing.T, d *xdstest.Delta, typ string, within time.Duration, ok func(*discoveryv3.DeltaDiscoveryResponse) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if r := recvType(t, d, typ, time.Until(deadline)); len(r.Resources) > 0 && ok(r) {
			return
		}
	}
}

func recvType(t *testing.T, d *xdstest.Delta, typ string, within time.Duration) *discoveryv3.DeltaDiscoveryResponse {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := recv(t, time.Until(deadline), d.Recv)
		must(t, d.Ack(r))
		if r.TypeUrl == typ {
			return r
		}
	}
}

func TestKubernetesGateways(t *testing.T) {
	in := startKube(t)
	ctx := context.Background()
	namespace(t, in.kc, "shop")
	backend(t, in.kc, "shop", "app", "10.1.0.5")

	d, err := xdstest.NewDelta(ctx, in.xds, &corev3.Node{Id: "edge-0", Cluster: "shop/edge"})
	must(t, err)
	must(t, d.Subscribe(resourcev3.ListenerType))

	_, err = in.gc.GatewayV1().Gateways("shop").Create(ctx, &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "shop"},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: "wafplane", Listeners: []gwapiv1.Listener{{Name: "http", Port: 8080, Protocol: gwapiv1.HTTPProtocolType}}}},
		metav1.CreateOptions{})
	must(t, err)
	_, err = in.gc.GatewayV1().HTTPRoutes("shop").Create(ctx, httpRoute("shop", "app", "edge", "shop", "app"), metav1.CreateOptions{})
	must(t, err)

	t.Run("the Envoy sees listener, route, cluster and endpoints within 2 s", func(t *testing.T) {
		// The Gateway may be served a moment before its route: wait for what holds the route.
		lr := recvType(t, d, resourcev3.ListenerType, 2*time.Second)
		l := &listenerv3.Listener{}
		must(t, lr.Resources[0].Resource.UnmarshalTo(l))
		checkListener(t, l)
		must(t, d.Subscribe(resourcev3.RouteType, "shop/edge/http"))
		recvUntil(t, d, resourcev3.RouteType, 2*time.Second, func(r *discoveryv3.DeltaDiscoveryResponse) bool {
			rc := &routev3.RouteConfiguration{}
			must(t, r.Resources[0].Resource.UnmarshalTo(rc))
			return len(rc.VirtualHosts) > 0 && rc.VirtualHosts[0].Routes[0].GetRoute().GetCluster() == "shop/app:80"
		})
		must(t, d.Subscribe(resourcev3.ClusterType))
		recvUntil(t, d, resourcev3.ClusterType, 2*time.Second, func(r *discoveryv3.DeltaDiscoveryResponse) bool {
			for _, res := range r.Resources {
				c := &clusterv3.Cluster{}
				must(t, res.Resource.UnmarshalTo(c))
				if c.Name == "shop/app:80" && c.GetType() == clusterv3.Cluster_EDS {
					return true
				}
			}
			return false
		})
		must(t, d.Subscribe(resourcev3.EndpointType, "shop/app:80"))
		recvUntil(t, d, resourcev3.EndpointType, 2*time.Second, func(r *discoveryv3.DeltaDiscoveryResponse) bool {
			cla := &endpointv3.ClusterLoadAssignment{}
			must(t, r.Resources[0].Resource.UnmarshalTo(cla))
			if len(cla.Endpoints) == 0 {
				return false
			}
			sa := cla.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress()
			return sa.Address == "10.1.0.5" && sa.GetPortValue() == 8080
		})
	})

	t.Run("status is written", func(t *testing.T) {
		eventually(t, "GatewayClass, Gateway and HTTPRoute status", 10*time.Second, func() bool {
			gcl, err := in.gc.GatewayV1().GatewayClasses().Get(ctx, "wafplane", metav1.GetOptions{})
			must(t, err)
			g, err := in.gc.GatewayV1().Gateways("shop").Get(ctx, "edge", metav1.GetOptions{})
			must(t, err)
			ok := meta.IsStatusConditionTrue(gcl.Status.Conditions, "Accepted") &&
				meta.IsStatusConditionTrue(g.Status.Conditions, "Accepted") && meta.IsStatusConditionTrue(g.Status.Conditions, "Programmed") &&
				len(g.Status.Listeners) == 1 && g.Status.Listeners[0].AttachedRoutes == 1 && len(g.Status.Addresses) == 1
			a, r := routeCondition(t, in.gc, "shop", "app", "Accepted"), routeCondition(t, in.gc, "shop", "app", "ResolvedRefs")
			return ok && a != nil && a.Status == metav1.ConditionTrue && r != nil && r.Status == metav1.ConditionTrue
		})
	})

	t.Run("provisioning: Deployment, Service and bootstrap ConfigMap owned by the Gateway", func(t *testing.T) {
		g, err := in.gc.GatewayV1().Gateways("shop").Get(ctx, "edge", metav1.GetOptions{})
		must(t, err)
		owned := func(m metav1.ObjectMeta) bool {
			return len(m.OwnerReferences) == 1 && m.OwnerReferences[0].UID == g.UID && m.OwnerReferences[0].Kind == "Gateway"
		}
		eventually(t, "provisioned objects", 10*time.Second, func() bool {
			dep, e1 := in.kc.AppsV1().Deployments("shop").Get(ctx, "wafplane-edge", metav1.GetOptions{})
			svc, e2 := in.kc.CoreV1().Services("shop").Get(ctx, "wafplane-edge", metav1.GetOptions{})
			cm, e3 := in.kc.CoreV1().ConfigMaps("shop").Get(ctx, "wafplane-edge", metav1.GetOptions{})
			if e1 != nil || e2 != nil || e3 != nil {
				return false
			}
			if !owned(dep.ObjectMeta) || !owned(svc.ObjectMeta) || !owned(cm.ObjectMeta) || svc.Spec.Ports[0].Port != 8080 {
				t.Fatalf("provisioned objects are not owned by the Gateway or miss its port")
			}
			raw, err := yaml.YAMLToJSON([]byte(cm.Data["bootstrap.yaml"]))
			must(t, err)
			b := &bootstrapv3.Bootstrap{}
			must(t, protojson.Unmarshal(raw, b))
			must(t, b.ValidateAll())
			if b.Node.Cluster != "shop/edge" {
				t.Fatalf("bootstrap node cluster %q", b.Node.Cluster)
			}
			return true
		})
	})

	t.Run("a cross-namespace backend needs a ReferenceGrant", func(t *testing.T) {
		namespace(t, in.kc, "backend")
		backend(t, in.kc, "backend", "api", "10.2.0.7")
		_, err := in.gc.GatewayV1().HTTPRoutes("shop").Create(ctx, httpRoute("shop", "api", "edge", "backend", "api"), metav1.CreateOptions{})
		must(t, err)
		eventually(t, "RefNotPermitted", 10*time.Second, func() bool {
			c := routeCondition(t, in.gc, "shop", "api", "ResolvedRefs")
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "RefNotPermitted"
		})
		_, err = in.gc.GatewayV1().ReferenceGrants("backend").Create(ctx, &gwapiv1.ReferenceGrant{
			ObjectMeta: metav1.ObjectMeta{Name: "shop-routes", Namespace: "backend"},
			Spec: gwapiv1.ReferenceGrantSpec{
				From: []gwapiv1.ReferenceGrantFrom{{Group: gwapiv1.GroupName, Kind: "HTTPRoute", Namespace: "shop"}},
				To:   []gwapiv1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
			}}, metav1.CreateOptions{})
		must(t, err)
		eventually(t, "ResolvedRefs after the grant", 10*time.Second, func() bool {
			c := routeCondition(t, in.gc, "shop", "api", "ResolvedRefs")
			return c != nil && c.Status == metav1.ConditionTrue
		})
	})

	t.Run("an opt-out label removes the filter, routing goes on", func(t *testing.T) {
		label := func(labels map[string]string) {
			// wafplane writes the Gateway's status meanwhile: retry on conflicts.
			must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
				g, err := in.gc.GatewayV1().Gateways("shop").Get(ctx, "edge", metav1.GetOptions{})
				if err != nil {
					return err
				}
				g.Labels = labels
				_, err = in.gc.GatewayV1().Gateways("shop").Update(ctx, g, metav1.UpdateOptions{})
				return err
			}))
		}
		for _, name := range []string{"wafplane.dev/enabled", "appsec.datadoghq.com/enabled"} {
			label(map[string]string{name: "false"})
			l := &listenerv3.Listener{}
			must(t, recvType(t, d, resourcev3.ListenerType, 5*time.Second).Resources[0].Resource.UnmarshalTo(l))
			if filters := httpFilters(t, l); len(filters) != 1 || filters[0] != "envoy.filters.http.router" {
				t.Fatalf("%s=false: filters %v, want the router alone", name, filters)
			}
			label(nil)
			must(t, recvType(t, d, resourcev3.ListenerType, 5*time.Second).Resources[0].Resource.UnmarshalTo(l))
			checkListener(t, l)
		}
		eventually(t, "ProtectionDisabled event", 10*time.Second, func() bool {
			evs, err := in.kc.CoreV1().Events("shop").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=edge"})
			must(t, err)
			for _, e := range evs.Items {
				if e.Reason == "ProtectionDisabled" {
					return true
				}
			}
			return false
		})
	})

	t.Run("an EndpointSlice change refreshes only the endpoints", func(t *testing.T) {
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			slice, err := in.kc.DiscoveryV1().EndpointSlices("shop").Get(ctx, "app-1", metav1.GetOptions{})
			if err != nil {
				return err
			}
			slice.Endpoints[0].Addresses = []string{"10.1.0.6"}
			_, err = in.kc.DiscoveryV1().EndpointSlices("shop").Update(ctx, slice, metav1.UpdateOptions{})
			return err
		}))
		recvUntil(t, d, resourcev3.EndpointType, 2*time.Second, func(r *discoveryv3.DeltaDiscoveryResponse) bool {
			cla := &endpointv3.ClusterLoadAssignment{}
			must(t, r.Resources[0].Resource.UnmarshalTo(cla))
			return len(cla.Endpoints) > 0 && cla.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address == "10.1.0.6"
		})
		// The loop logs after it publishes, so the line may trail the push a little.
		eventually(t, "the slice change refreshed only the endpoints (endpoints_only=true)", 2*time.Second, func() bool {
			return strings.Contains(in.log.String(), "endpoints_only=true")
		})
	})

	t.Run("kube-apiserver restarts: informers resume", func(t *testing.T) {
		in.env.StopAPIServer()
		time.Sleep(time.Second)
		in.env.StartAPIServer()
		// A change made right after the restart reaches the Envoy.
		slice, err := in.kc.DiscoveryV1().EndpointSlices("shop").Get(ctx, "app-1", metav1.GetOptions{})
		must(t, err)
		slice.Endpoints[0].Addresses = []string{"10.1.0.9"}
		_, err = in.kc.DiscoveryV1().EndpointSlices("shop").Update(ctx, slice, metav1.UpdateOptions{})
		must(t, err)
		eventually(t, "new endpoint after restart", 30*time.Second, func() bool {
			r := recvType(t, d, resourcev3.EndpointType, 30*time.Second)
			cla := &endpointv3.ClusterLoadAssignment{}
			must(t, r.Resources[0].Resource.UnmarshalTo(cla))
			return cla.ClusterName == "shop/app:80" && cla.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address == "10.1.0.9"
		})
	})
}

func httpFilters(t *testing.T, l *listenerv3.Listener) []string {
	hcm := &hcmv3.HttpConnectionManager{}
	must(t, l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm))
	var names []string
	for _, f := range hcm.HttpFilters {
		names = append(names, f.Name)
	}
	return names
}

// Listeners sharing a port (different hostnames) and long listener names provision one
// Service and container port per port number; a Gateway whose Envoys cannot be provisioned
// is Programmed=False with the reason, not a silent Warning Event.
func TestProvisioningSharedPortsAndFailure(t *testing.T) {
	in := startKube(t)
	ctx := context.Background()
	namespace(t, in.kc, "shop")
	cert, key := testKeyPair(t)
	_, err := in.kc.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cert", Namespace: "shop"},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": cert, "tls.key": key}}, metav1.CreateOptions{})
	must(t, err)
	var listeners []gwapiv1.Listener
	for i, host := range []string{"a.shop.example", "b.shop.example", "c.shop.example", "d.shop.example"} {
		listeners = append(listeners,
			gwapiv1.Listener{Name: gwapiv1.SectionName(fmt.Sprintf("https-with-hostname-%d", i)), Port: 443, Protocol: gwapiv1.HTTPSProtocolType,
				Hostname: ptr(gwapiv1.Hostname(host)), TLS: &gwapiv1.ListenerTLSConfig{CertificateRefs: []gwapiv1.SecretObjectReference{{Name: "cert"}}}},
			gwapiv1.Listener{Name: gwapiv1.SectionName(fmt.Sprintf("http-with-hostname-%d", i)), Port: 80, Protocol: gwapiv1.HTTPProtocolType,
				Hostname: ptr(gwapiv1.Hostname(host))})
	}
	_, err = in.gc.GatewayV1().Gateways("shop").Create(ctx, &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "shop"},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: "wafplane", Listeners: listeners}}, metav1.CreateOptions{})
	must(t, err)
	eventually(t, "edge programmed with an address", 60*time.Second, func() bool {
		g, err := in.gc.GatewayV1().Gateways("shop").Get(ctx, "edge", metav1.GetOptions{})
		return err == nil && meta.IsStatusConditionTrue(g.Status.Conditions, "Programmed") && len(g.Status.Addresses) > 0
	})
	svc, err := in.kc.CoreV1().Services("shop").Get(ctx, "wafplane-edge", metav1.GetOptions{})
	must(t, err)
	if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[1].Port != 80 || svc.Spec.Ports[0].Name != "https-443" {
		t.Errorf("Service ports %+v, want https-443 and http-80", svc.Spec.Ports)
	}
	dep, err := in.kc.AppsV1().Deployments("shop").Get(ctx, "wafplane-edge", metav1.GetOptions{})
	must(t, err)
	if n := len(dep.Spec.Template.Spec.Containers[0].Ports); n != 2 {
		t.Errorf("%d container ports, want 2", n)
	}

	// A ConfigMap of the provisioned name that wafplane does not own: provisioning fails.
	_, err = in.kc.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "wafplane-blocked", Namespace: "shop"}}, metav1.CreateOptions{})
	must(t, err)
	// notProgrammed creates an HTTP Gateway and waits for Programmed=False saying why.
	notProgrammed := func(name, reason, message string) {
		t.Helper()
		_, err := in.gc.GatewayV1().Gateways("shop").Create(ctx, &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
			Spec: gwapiv1.GatewaySpec{GatewayClassName: "wafplane", Listeners: []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType}}}},
			metav1.CreateOptions{})
		must(t, err)
		eventually(t, name+" is Programmed=False", 60*time.Second, func() bool {
			g, err := in.gc.GatewayV1().Gateways("shop").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			c := meta.FindStatusCondition(g.Status.Conditions, "Programmed")
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == reason && strings.Contains(c.Message, message)
		})
	}
	notProgrammed("blocked", "Invalid", "could not be provisioned")
	eventually(t, "the failure logged once at WARN", 10*time.Second, func() bool {
		return strings.Count(in.log.String(), `level=WARN msg=ProvisioningFailed`) == 1
	})

	// A Service of the provisioned name that wafplane does not own is never taken over.
	_, err = in.kc.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "wafplane-taken", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "mine", Port: 9999}}}}, metav1.CreateOptions{})
	must(t, err)
	notProgrammed("taken", "Invalid", "not managed by wafplane")
	svc, err = in.kc.CoreV1().Services("shop").Get(ctx, "wafplane-taken", metav1.GetOptions{})
	must(t, err)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9999 {
		t.Errorf("the unmanaged Service was changed: %+v", svc.Spec.Ports)
	}
}

// testKeyPair is a certificate and key that parse, for listener Secrets.
func testKeyPair(t *testing.T) ([]byte, []byte) {
	t.Helper()
	ca, err := pki.New(time.Now())
	must(t, err)
	c, k, err := ca.IssueGateway("test/listener", time.Now())
	must(t, err)
	return c, k
}

// The listener and Gateway conditions the Gateway API conformance suite checks, written to
// and read back from the real API server.
func TestGatewayStatusConformance(t *testing.T) {
	in := startKube(t)
	ctx := context.Background()
	namespace(t, in.kc, "shop")
	_, key := testKeyPair(t)
	_, err := in.kc.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "broken", Namespace: "shop"},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("-----BEGIN CERTIFICATE-----\nbm90\n-----END CERTIFICATE-----\n"), "tls.key": key}},
		metav1.CreateOptions{})
	must(t, err)
	backend(t, in.kc, "shop", "app", "10.1.0.5")
	kinds := func(k ...string) *gwapiv1.AllowedRoutes {
		ar := &gwapiv1.AllowedRoutes{}
		for _, kind := range k {
			ar.Kinds = append(ar.Kinds, gwapiv1.RouteGroupKind{Kind: gwapiv1.Kind(kind)})
		}
		return ar
	}
	create := func(name string, ls ...gwapiv1.Listener) {
		_, err := in.gc.GatewayV1().Gateways("shop").Create(ctx, &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
			Spec: gwapiv1.GatewaySpec{GatewayClassName: "wafplane", Listeners: ls}}, metav1.CreateOptions{})
		must(t, err)
	}
	create("mixed",
		gwapiv1.Listener{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType},
		gwapiv1.Listener{Name: "invalid-kinds", Port: 81, Protocol: gwapiv1.HTTPProtocolType, AllowedRoutes: kinds("InvalidRoute")},
		gwapiv1.Listener{Name: "bad-cert", Port: 443, Protocol: gwapiv1.HTTPSProtocolType,
			TLS: &gwapiv1.ListenerTLSConfig{CertificateRefs: []gwapiv1.SecretObjectReference{{Name: "broken"}}}})
	create("none-valid", gwapiv1.Listener{Name: "udp", Port: 53, Protocol: gwapiv1.UDPProtocolType})
	_, err = in.gc.GatewayV1().HTTPRoutes("shop").Create(ctx, httpRoute("shop", "app", "mixed", "shop", "app"), metav1.CreateOptions{})
	must(t, err)

	listener := func(g *gwapiv1.Gateway, name string) gwapiv1.ListenerStatus {
		for _, l := range g.Status.Listeners {
			if string(l.Name) == name {
				return l
			}
		}
		return gwapiv1.ListenerStatus{}
	}
	var mixed *gwapiv1.Gateway
	eventually(t, "mixed's status", 60*time.Second, func() bool {
		mixed, err = in.gc.GatewayV1().Gateways("shop").Get(ctx, "mixed", metav1.GetOptions{})
		return err == nil && listener(mixed, "bad-cert").AttachedRoutes == 1 && listener(mixed, "http").AttachedRoutes == 1
	})
	if l := listener(mixed, "invalid-kinds"); len(l.SupportedKinds) != 0 || condition(l.Conditions, "ResolvedRefs").Reason != "InvalidRouteKinds" {
		t.Errorf("invalid-kinds: %+v", l)
	}
	if c := condition(listener(mixed, "bad-cert").Conditions, "ResolvedRefs"); c.Status != metav1.ConditionFalse || c.Reason != "InvalidCertificateRef" {
		t.Errorf("bad-cert ResolvedRefs %+v", c)
	}
	if c := condition(mixed.Status.Conditions, "Accepted"); c.Status != metav1.ConditionTrue || c.Reason != "ListenersNotValid" {
		t.Errorf("mixed Accepted %+v", c)
	}
	eventually(t, "none-valid not accepted", 60*time.Second, func() bool {
		g, err := in.gc.GatewayV1().Gateways("shop").Get(ctx, "none-valid", metav1.GetOptions{})
		if err != nil {
			return false
		}
		c := condition(g.Status.Conditions, "Accepted")
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "ListenersNotValid" && len(listener(g, "udp").SupportedKinds) == 0 &&
			listener(g, "udp").SupportedKinds != nil
	})
}
