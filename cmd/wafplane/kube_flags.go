package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	corev1 "k8s.io/api/core/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/wafplane/wafplane/discovery/kubernetes"
	"github.com/wafplane/wafplane/xds/pki"
)

// kubeFlags configure `serve --source=kubernetes`.
type kubeFlags struct {
	kubeconfig, controller, namespace, service string
	provision                                  bool
	envoyImage, serviceType                    string
}

func (k *kubeFlags) register(env *envFlags) {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "wafplane-system"
	}
	env.String(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
	env.String(&k.controller, "controller-name", kubernetes.DefaultControllerName, "GatewayClass controllerName served by wafplane")
	env.String(&k.namespace, "namespace", ns, "wafplane's namespace: its leader-election Lease and its Service live there (env POD_NAMESPACE too)")
	env.String(&k.service, "service-name", "wafplane", "wafplane's Service, the address provisioned Envoys use for xDS and the processor")
	env.Bool(&k.provision, "provision", true, "make an Envoy Deployment, Service and bootstrap ConfigMap per Gateway")
	env.String(&k.envoyImage, "envoy-image", kubernetes.DefaultEnvoyImage, "Envoy image of provisioned Deployments")
	env.String(&k.serviceType, "envoy-service-type", string(corev1.ServiceTypeLoadBalancer), "type of provisioned Services: LoadBalancer, NodePort or ClusterIP")
}

// serviceHost is wafplane's in-cluster DNS name.
func (k *kubeFlags) serviceHost() string {
	return fmt.Sprintf("%s.%s.svc.cluster.local", k.service, k.namespace)
}

func (k *kubeFlags) restConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if k.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", k.kubeconfig)
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	// One conversion can write many statuses; client-go's default 5 QPS would throttle it.
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// clientset is a client of the cluster --kubeconfig names.
func (k *kubeFlags) clientset() (k8s.Interface, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	return k8s.NewForConfig(cfg)
}

func (k *kubeFlags) source(xdsAddress string, ca func() *pki.CA, log *slog.Logger) (*kubernetes.Source, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	switch corev1.ServiceType(k.serviceType) {
	case corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort, corev1.ServiceTypeClusterIP:
	default:
		return nil, fmt.Errorf("--envoy-service-type %q: want LoadBalancer, NodePort or ClusterIP", k.serviceType)
	}
	src := &kubernetes.Source{Config: cfg, ControllerName: k.controller, Log: log, LeaseNamespace: k.namespace}
	if k.provision {
		_, port, err := net.SplitHostPort(xdsAddress)
		if err != nil {
			return nil, fmt.Errorf("--xds-address %q: %w", xdsAddress, err)
		}
		xds := net.JoinHostPort(k.serviceHost(), port)
		certDir := ""
		if ca != nil {
			certDir = kubernetes.XDSCertDir
		}
		src.Provision = &kubernetes.Provisioner{Image: k.envoyImage, ServiceType: corev1.ServiceType(k.serviceType), CA: ca,
			Bootstrap: func(gateway string) ([]byte, error) {
				b, err := bootstrapFlags{gateway: gateway, xdsAddress: xds, adminPort: 9901, mountedCertDir: certDir}.bootstrap()
				if err != nil {
					return nil, err
				}
				return render(b, "yaml")
			}}
	}
	return src, nil
}
