package kubernetes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/wafplane/wafplane/xds/pki"
)

// Labels on provisioned objects.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelGateway   = "wafplane.dev/gateway"
	managedBy      = "wafplane"
)

// DefaultEnvoyImage is the Envoy provisioned for each Gateway.
const DefaultEnvoyImage = "docker.io/envoyproxy/envoy:distroless-v1.36.2"

// Provisioner makes, for each Gateway, an Envoy Deployment, a Service with the listeners'
// ports and a ConfigMap with the Envoy bootstrap, all owned by the Gateway.
type Provisioner struct {
	Image       string             // DefaultEnvoyImage when empty
	ServiceType corev1.ServiceType // LoadBalancer when empty
	// Bootstrap returns the Envoy bootstrap (what `wafplane bootstrap` prints) for the
	// gateway "namespace/name"; with CA, one that reads its xDS client certificate from
	// XDSCertDir.
	Bootstrap func(gateway string) ([]byte, error)
	// CA, when set, issues each Gateway's Envoys an xDS client certificate naming the
	// Gateway, kept in a Secret they mount at XDSCertDir.
	CA func() *pki.CA
}

// XDSCertDir is where provisioned Envoys find their xDS client certificate.
const XDSCertDir = "/etc/wafplane/xds"

// xdsSecretName is the Secret with a Gateway's xDS client certificate.
func xdsSecretName(gateway string) string { return provisionedName(gateway) + "-xds" }

// provisionedName is the name of a Gateway's Deployment, Service and ConfigMap.
func provisionedName(gateway string) string {
	name := "wafplane-" + gateway
	if len(name) <= 63 {
		return name
	}
	h := sha256.Sum256([]byte(gateway))
	return name[:54] + "-" + hex.EncodeToString(h[:])[:8]
}

func (p *Provisioner) desired(g *gwapiv1.Gateway) (*corev1.ConfigMap, *appsv1.Deployment, *corev1.Service, error) {
	bootstrap, err := p.Bootstrap(g.Namespace + "/" + g.Name)
	if err != nil {
		return nil, nil, nil, err
	}
	name := provisionedName(g.Name)
	labels := map[string]string{LabelManagedBy: managedBy, LabelGateway: g.Name}
	owner := metav1.OwnerReference{APIVersion: gwapiv1.GroupVersion.String(), Kind: "Gateway", Name: g.Name, UID: g.UID,
		Controller: ptr(true), BlockOwnerDeletion: ptr(true)}
	om := metav1.ObjectMeta{Name: name, Namespace: g.Namespace, Labels: labels, OwnerReferences: []metav1.OwnerReference{owner}}

	cm := &corev1.ConfigMap{ObjectMeta: om, Data: map[string]string{"bootstrap.yaml": string(bootstrap)}}
	image := p.Image
	if image == "" {
		image = DefaultEnvoyImage
	}
	cports, sports := listenerPorts(g)
	dep := &appsv1.Deployment{ObjectMeta: om, Spec: appsv1.DeploymentSpec{
		Replicas: ptr(int32(1)),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{
					Name:  "envoy",
					Image: image,
					// The pod name is the node id, unique per Envoy; the bootstrap sets the
					// node cluster to the Gateway.
					Args:         []string{"-c", "/etc/envoy/bootstrap.yaml", "--service-node", "$(POD_NAME)", "--log-level", "info"},
					Env:          []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
					Ports:        cports,
					VolumeMounts: p.mounts(),
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: ptr(false),
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}},
					},
				}},
				Volumes: p.volumes(g.Name),
			},
		},
	}}
	st := p.ServiceType
	if st == "" {
		st = corev1.ServiceTypeLoadBalancer
	}
	svc := &corev1.Service{ObjectMeta: om, Spec: corev1.ServiceSpec{Type: st, Selector: labels, Ports: sports}}
	return cm, dep, svc, nil
}

func (p *Provisioner) mounts() []corev1.VolumeMount {
	m := []corev1.VolumeMount{{Name: "bootstrap", MountPath: "/etc/envoy", ReadOnly: true}}
	if p.CA != nil {
		m = append(m, corev1.VolumeMount{Name: "xds-cert", MountPath: XDSCertDir, ReadOnly: true})
	}
	return m
}

func (p *Provisioner) volumes(gateway string) []corev1.Volume {
	v := []corev1.Volume{{Name: "bootstrap", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: provisionedName(gateway)}},
	}}}
	if p.CA != nil {
		v = append(v, corev1.Volume{Name: "xds-cert", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: xdsSecretName(gateway), DefaultMode: ptr(int32(0o440))},
		}})
	}
	return v
}

// reconcileCert keeps the Gateway's xDS client certificate: issued when missing, when its
// CA is no longer the current one, or before it expires.
// It returns a fingerprint of the certificate in force, which the pod template carries so
// that a new certificate rolls the Envoys: they read it from the file when they start.
func (p *Provisioner) reconcileCert(ctx context.Context, kc kubernetes.Interface, o objects, g *gwapiv1.Gateway, om metav1.ObjectMeta) (string, error) {
	ca := p.CA()
	name := xdsSecretName(g.Name)
	var cur *corev1.Secret
	for _, x := range o.secrets {
		if x.Namespace == g.Namespace && x.Name == name {
			cur = x
		}
	}
	now := time.Now()
	if cur != nil && !ca.NeedsRenewal(cur.Data[corev1.TLSCertKey], now) && bytes.Equal(cur.Data[pki.BundleFile], ca.BundlePEM()) {
		return certFingerprint(cur.Data[corev1.TLSCertKey]), nil
	}
	certPEM, keyPEM, err := ca.IssueGateway(key(g), now)
	if err != nil {
		return "", err
	}
	data := map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, pki.BundleFile: ca.BundlePEM()}
	if cur == nil {
		om.Name = name
		_, err = kc.CoreV1().Secrets(g.Namespace).Create(ctx, &corev1.Secret{ObjectMeta: om, Type: corev1.SecretTypeTLS, Data: data},
			metav1.CreateOptions{FieldManager: managedBy})
	} else {
		upd := cur.DeepCopy()
		upd.Data = data
		_, err = kc.CoreV1().Secrets(g.Namespace).Update(ctx, upd, metav1.UpdateOptions{FieldManager: managedBy})
	}
	if err != nil {
		return "", fmt.Errorf("Secret %s/%s: %w", g.Namespace, name, err)
	}
	return certFingerprint(certPEM), nil
}

// AnnotationXDSCertificate on a provisioned pod template names the client certificate the
// Envoys started with.
const AnnotationXDSCertificate = "wafplane.dev/xds-certificate"

func certFingerprint(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// listenerPorts is one container and Service port per distinct port number: listeners
// may share a port (different hostnames), and a Service or pod refuses the same port twice.
// Names come from the protocol and the number ("https-443"): unique, valid (at most 15
// characters), never a listener name cut into a clash.
func listenerPorts(g *gwapiv1.Gateway) ([]corev1.ContainerPort, []corev1.ServicePort) {
	var cports []corev1.ContainerPort
	var sports []corev1.ServicePort
	seen := map[int32]bool{}
	for _, l := range g.Spec.Listeners {
		if seen[l.Port] {
			continue
		}
		seen[l.Port] = true
		name := fmt.Sprintf("%s-%d", strings.ToLower(string(l.Protocol)), l.Port)
		if len(name) > 15 || !portNamePattern.MatchString(name) {
			name = fmt.Sprintf("port-%d", l.Port)
		}
		cports = append(cports, corev1.ContainerPort{Name: name, ContainerPort: l.Port, Protocol: corev1.ProtocolTCP})
		sports = append(sports, corev1.ServicePort{Name: name, Port: l.Port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(l.Port)})
	}
	return cports, sports
}

// portNamePattern is an IANA service name as Kubernetes checks it.
var portNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// reconcile creates what is missing and updates what drifted, reading existing objects
// from the informers.
func (p *Provisioner) reconcile(ctx context.Context, kc kubernetes.Interface, o objects, g *gwapiv1.Gateway) error {
	cm, dep, svc, err := p.desired(g)
	if err != nil {
		return fmt.Errorf("bootstrap for %s: %w", key(g), err)
	}
	ns, name := g.Namespace, cm.Name
	var curCM *corev1.ConfigMap
	for _, x := range o.configMaps {
		if x.Namespace == ns && x.Name == name {
			curCM = x
		}
	}
	var curDep *appsv1.Deployment
	for _, x := range o.deployments {
		if x.Namespace == ns && x.Name == name {
			curDep = x
		}
	}
	var curSvc *corev1.Service
	for _, x := range o.services {
		if x.Namespace == ns && x.Name == name {
			curSvc = x
		}
	}
	if p.CA != nil {
		cert, err := p.reconcileCert(ctx, kc, o, g, cm.ObjectMeta)
		if err != nil {
			return err
		}
		dep.Spec.Template.Annotations = map[string]string{AnnotationXDSCertificate: cert}
	}
	opts := metav1.CreateOptions{FieldManager: managedBy}
	upd := metav1.UpdateOptions{FieldManager: managedBy}
	switch {
	case curCM == nil:
		_, err = kc.CoreV1().ConfigMaps(ns).Create(ctx, cm, opts)
	case !equality.Semantic.DeepEqual(curCM.Data, cm.Data):
		c := curCM.DeepCopy()
		c.Data = cm.Data
		_, err = kc.CoreV1().ConfigMaps(ns).Update(ctx, c, upd)
	}
	if err != nil {
		return fmt.Errorf("ConfigMap %s/%s: %w", ns, name, err)
	}
	switch {
	case curDep == nil:
		_, err = kc.AppsV1().Deployments(ns).Create(ctx, dep, opts)
	case len(curDep.Spec.Template.Spec.Containers) == 0 ||
		dep.Spec.Template.Spec.Containers[0].Image != curDep.Spec.Template.Spec.Containers[0].Image ||
		!equality.Semantic.DeepEqual(dep.Spec.Template.Spec.Containers[0].Ports, curDep.Spec.Template.Spec.Containers[0].Ports) ||
		len(dep.Spec.Template.Spec.Volumes) != len(curDep.Spec.Template.Spec.Volumes) ||
		dep.Spec.Template.Annotations[AnnotationXDSCertificate] != curDep.Spec.Template.Annotations[AnnotationXDSCertificate]:
		d := curDep.DeepCopy()
		d.Spec.Template = dep.Spec.Template
		_, err = kc.AppsV1().Deployments(ns).Update(ctx, d, upd)
	}
	if err != nil {
		return fmt.Errorf("Deployment %s/%s: %w", ns, name, err)
	}
	switch {
	case curSvc == nil:
		_, err = kc.CoreV1().Services(ns).Create(ctx, svc, opts)
	case curSvc.Labels[LabelManagedBy] != managedBy:
		// Services are looked up among all Services (backends too): never take over one.
		err = fmt.Errorf("exists and is not managed by wafplane (no label %s=%s): left alone; rename or delete it", LabelManagedBy, managedBy)
	case !samePorts(curSvc.Spec.Ports, svc.Spec.Ports) || curSvc.Spec.Type != svc.Spec.Type:
		s := curSvc.DeepCopy()
		s.Spec.Ports, s.Spec.Type = svc.Spec.Ports, svc.Spec.Type
		_, err = kc.CoreV1().Services(ns).Update(ctx, s, upd)
	}
	if err != nil {
		return fmt.Errorf("Service %s/%s: %w", ns, name, err)
	}
	return nil
}

// samePorts compares what we set; the API server fills in node ports.
func samePorts(a, b []corev1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Port != b[i].Port || a[i].TargetPort != b[i].TargetPort {
			return false
		}
	}
	return true
}
