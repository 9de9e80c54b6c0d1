package kubernetes

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/wafplane/wafplane/discovery"
)

// Names the sidecar injection puts in a pod.
const (
	SidecarContainerName = "wafplane-processor"
	// AnnotationSidecar marks an injected pod with the gateway its processor serves.
	AnnotationSidecar = "wafplane.dev/sidecar"
	// PolicyConfigMap holds serve's policy file in each namespace with sidecars; it
	// carries LabelSidecarPolicy, which no other ConfigMap wafplane writes has.
	PolicyConfigMap    = "wafplane-sidecar-policy"
	LabelSidecarPolicy = "wafplane.dev/sidecar-policy"
	policyKey          = "policy.yaml"
	policyDir          = "/etc/wafplane/policy"
	socketDir          = "/var/run/wafplane"
	// SidecarSocket is where Envoy Gateway's Envoys reach the processor of their pod.
	SidecarSocket = socketDir + "/ext_proc.sock"
	// envoyGatewayContainer is the Envoy container of Envoy Gateway's pods.
	envoyGatewayContainer = "envoy"
	sidecarUser           = 65532 // the image's nonroot user
)

// Labels Istio and Envoy Gateway put on the pods of a Gateway's Envoys.
const (
	IstioGatewayLabel          = "gateway.networking.k8s.io/gateway-name"
	EnvoyGatewayOwnerName      = "gateway.envoyproxy.io/owning-gateway-name"
	EnvoyGatewayOwnerNamespace = "gateway.envoyproxy.io/owning-gateway-namespace"
)

// SidecarSettings is the processor container injected into gateway pods; the fields are
// Datadog's injector.sidecar.* values.
type SidecarSettings struct {
	Image      string // repository:tag
	Port       int32  // ext_proc gRPC, on 127.0.0.1
	HealthPort int32
	// AdminPort serves the processor's /events, /metrics and /rules on 127.0.0.1 in the
	// pod (kubectl port-forward reaches it); 0 disables.
	AdminPort int32
	// BodyLimit is bodyParsingSizeLimit: bytes of body inspected; 0 and -1 turn body
	// inspection off; nil keeps the processor's default.
	BodyLimit *int
	Resources corev1.ResourceRequirements
	// Native: the API server runs native sidecars (init containers with restartPolicy
	// Always, Kubernetes 1.29+), which start before Envoy and stop after it.
	Native bool
}

// Validate checks the settings, naming the Helm value at fault.
func (s SidecarSettings) Validate() error {
	switch {
	case s.Image == "" || strings.ContainsAny(s.Image, " \t\n"):
		return fmt.Errorf("sidecar image %q: want repository:tag", s.Image)
	case s.Port < 1 || s.Port > 65535:
		return fmt.Errorf("sidecar port %d: want 1-65535", s.Port)
	case s.HealthPort < 1 || s.HealthPort > 65535 || s.HealthPort == s.Port:
		return fmt.Errorf("sidecar healthPort %d: want 1-65535, not the gRPC port", s.HealthPort)
	case s.AdminPort < 0 || s.AdminPort > 65535 || s.AdminPort != 0 && (s.AdminPort == s.Port || s.AdminPort == s.HealthPort):
		return fmt.Errorf("sidecar admin port %d: want 1-65535 (0: none), not the gRPC or health port", s.AdminPort)
	case s.BodyLimit != nil && *s.BodyLimit < -1:
		return fmt.Errorf("sidecar bodyParsingSizeLimit %d: want bytes, 0 (no body processing) or -1 (no body parsing)", *s.BodyLimit)
	}
	return nil
}

// ParseResources reads the sidecar's requests and limits ("" leaves one unset).
func ParseResources(cpuRequest, memRequest, cpuLimit, memLimit string) (corev1.ResourceRequirements, error) {
	var r corev1.ResourceRequirements
	for _, q := range []struct {
		name, value string
		list        *corev1.ResourceList
		resource    corev1.ResourceName
	}{
		{"resources.requests.cpu", cpuRequest, &r.Requests, corev1.ResourceCPU},
		{"resources.requests.memory", memRequest, &r.Requests, corev1.ResourceMemory},
		{"resources.limits.cpu", cpuLimit, &r.Limits, corev1.ResourceCPU},
		{"resources.limits.memory", memLimit, &r.Limits, corev1.ResourceMemory},
	} {
		if q.value == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.value)
		if err != nil {
			return r, fmt.Errorf("sidecar %s %q: %w", q.name, q.value, err)
		}
		if *q.list == nil {
			*q.list = corev1.ResourceList{}
		}
		(*q.list)[q.resource] = v
	}
	return r, nil
}

// portConflict names a container of the pod that declares a port the processor would
// listen on in the pod's network namespace ("" when none): injecting would make one of the
// two fail to bind — Istio's classic ingress gateway listens on 8080, Datadog's default.
func portConflict(pod *corev1.Pod, proxy string, s SidecarSettings) string {
	mine := map[int32]string{s.HealthPort: "healthPort"}
	if proxy != discovery.ProxyEnvoyGateway { // there the processor serves a Unix socket
		mine[s.Port] = "port"
	}
	if s.AdminPort != 0 {
		mine[s.AdminPort] = "admin port"
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				if which, ok := mine[p.ContainerPort]; ok {
					return fmt.Sprintf("container %s declares port %d, the processor's %s", c.Name, p.ContainerPort, which)
				}
			}
		}
	}
	return ""
}

// patchOp is one JSON Patch (RFC 6902) operation, as admission responses carry them.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// hasSidecar says whether the pod already runs wafplane's processor.
func hasSidecar(spec *corev1.PodSpec) bool {
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			if c.Name == SidecarContainerName {
				return true
			}
		}
	}
	return false
}

// sidecarPatch is what turns a gateway pod into one with its own processor; nil when the
// pod has it already, so that a re-invocation changes nothing. It is pure.
func sidecarPatch(pod *corev1.Pod, proxy, gateway string, s SidecarSettings) []patchOp {
	if hasSidecar(&pod.Spec) {
		return nil
	}
	socket := proxy == discovery.ProxyEnvoyGateway
	var ops []patchOp
	add := func(path string, list int, value any) {
		if list == 0 {
			ops = append(ops, patchOp{Op: "add", Path: path, Value: []any{value}})
		} else {
			ops = append(ops, patchOp{Op: "add", Path: path + "/-", Value: value})
		}
	}
	c := sidecarContainer(proxy, gateway, s)
	switch {
	case !s.Native:
		add("/spec/containers", len(pod.Spec.Containers), c)
	case len(pod.Spec.InitContainers) == 0:
		ops = append(ops, patchOp{Op: "add", Path: "/spec/initContainers", Value: []any{c}})
	default: // first, so that it runs before whatever else the pod starts
		ops = append(ops, patchOp{Op: "add", Path: "/spec/initContainers/0", Value: c})
	}
	volumes := []corev1.Volume{
		{Name: "wafplane-policy", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: PolicyConfigMap}, Optional: ptr(true)}}},
		{Name: "wafplane-tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(resource.MustParse("64Mi"))}}},
	}
	if socket {
		volumes = append(volumes, corev1.Volume{Name: "wafplane-socket", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("1Mi"))}}})
	}
	for i, v := range volumes {
		add("/spec/volumes", len(pod.Spec.Volumes)+i, v)
	}
	if socket {
		for i, ctr := range pod.Spec.Containers {
			if ctr.Name == envoyGatewayContainer {
				add(fmt.Sprintf("/spec/containers/%d/volumeMounts", i), len(ctr.VolumeMounts),
					corev1.VolumeMount{Name: "wafplane-socket", MountPath: socketDir})
			}
		}
	}
	if len(pod.Annotations) == 0 {
		ops = append(ops, patchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{AnnotationSidecar: gateway}})
	} else {
		ops = append(ops, patchOp{Op: "add", Path: "/metadata/annotations/" + jsonPointerEscape(AnnotationSidecar), Value: gateway})
	}
	return ops
}

// sidecarContainer is the processor: gRPC on loopback in plaintext (it never leaves the
// pod) or, for Envoy Gateway, on a Unix socket; health on the pod's address for the kubelet.
func sidecarContainer(proxy, gateway string, s SidecarSettings) corev1.Container {
	_, name, _ := strings.Cut(gateway, ":") // proxy:namespace/name
	args := []string{"processor", "--host", "127.0.0.1", "--port", strconv.Itoa(int(s.Port)),
		"--health-host", "0.0.0.0", "--health-port", strconv.Itoa(int(s.HealthPort)), "--tls=false",
		"--policy", policyDir + "/" + policyKey, "--gateway", name}
	mounts := []corev1.VolumeMount{
		{Name: "wafplane-policy", MountPath: policyDir, ReadOnly: true},
		{Name: "wafplane-tmp", MountPath: "/tmp"}, // libddwaf's shared library is unpacked here
	}
	if proxy == discovery.ProxyEnvoyGateway {
		args = append(args, "--uds-path", SidecarSocket, "--uds-mode", "0666")
		mounts = append(mounts, corev1.VolumeMount{Name: "wafplane-socket", MountPath: socketDir})
	}
	if s.BodyLimit != nil {
		args = append(args, "--body-limit", strconv.Itoa(max(*s.BodyLimit, 0)))
	}
	if s.AdminPort != 0 {
		args = append(args, "--admin-address", "127.0.0.1:"+strconv.Itoa(int(s.AdminPort)))
	}
	probe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(s.HealthPort)}},
			PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 2}
	}
	c := corev1.Container{
		Name:  SidecarContainerName,
		Image: s.Image,
		Args:  args,
		Ports: []corev1.ContainerPort{{Name: "wafplane-health", ContainerPort: s.HealthPort, Protocol: corev1.ProtocolTCP}},
		// Envoy starts once the ruleset is loaded (native sidecars wait for the startup probe).
		StartupProbe:   probe(1, 60),
		ReadinessProbe: probe(5, 3),
		Resources:      s.Resources,
		VolumeMounts:   mounts,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(sidecarUser)), RunAsGroup: ptr(int64(sidecarUser)),
			ReadOnlyRootFilesystem: ptr(true), AllowPrivilegeEscalation: ptr(false),
			Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if s.Native {
		c.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

// jsonPointerEscape escapes a key for a JSON Pointer (RFC 6901).
func jsonPointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
