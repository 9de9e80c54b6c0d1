package kubernetes

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafplane/wafplane/discovery"
)

// injectionStatus is what /injections shows: the proxy types, the processor, and per
// gateway what was written, when, and the last error.
type injectionStatus struct {
	mu        sync.Mutex
	leader    bool
	proxies   map[string]*ProxyStatus
	processor ProcessorStatus
	gateways  map[string]*GatewayInjection // by ForeignGateway.Key()
	orphans   []WrittenObject              // deleted because no gateway wants them, newest last
	updated   time.Time
}

// ProxyStatus says whether a proxy type is injected and, when not, why.
type ProxyStatus struct {
	Enabled       bool   `json:"enabled"`
	CRDsInstalled bool   `json:"crdsInstalled"`
	Error         string `json:"error,omitempty"`
}

// ProcessorStatus is the processor the injected objects point at.
type ProcessorStatus struct {
	Service   string `json:"service"`
	Checked   bool   `json:"checked"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// GatewayInjection is one protected gateway.
type GatewayInjection struct {
	Proxy      string               `json:"proxy"`
	Namespace  string               `json:"namespace"`
	Name       string               `json:"name"`
	Sources    []string             `json:"sources"`
	Protection discovery.Protection `json:"protection"`
	Mode       string               `json:"mode"` // external or sidecar
	// SidecarMissing counts the gateway's running pods without the processor container
	// in sidecar mode; SidecarMissingPods names some of them.
	SidecarMissing     int             `json:"sidecarMissing,omitempty"`
	SidecarMissingPods []string        `json:"sidecarMissingPods,omitempty"`
	Objects            []WrittenObject `json:"objects"`
	LastError          string          `json:"lastError,omitempty"`
	ErrorAt            *time.Time      `json:"errorAt,omitempty"`
}

// WrittenObject is an object the injector keeps, and the last thing it did to it.
type WrittenObject struct {
	Kind       string    `json:"kind"`
	Namespace  string    `json:"namespace"`
	Name       string    `json:"name"`
	Generation int64     `json:"generation"`
	Op         string    `json:"op"` // created, updated, deleted, unchanged
	At         time.Time `json:"at"`
}

func newInjectionStatus() *injectionStatus {
	return &injectionStatus{proxies: map[string]*ProxyStatus{}, gateways: map[string]*GatewayInjection{}}
}

// Handler serves /injections as JSON.
func (in *Injector) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := in.state()
		st.mu.Lock()
		gws := make([]*GatewayInjection, 0, len(st.gateways))
		for _, g := range st.gateways {
			gws = append(gws, g)
		}
		sort.Slice(gws, func(i, j int) bool {
			return gws[i].Proxy+gws[i].Namespace+"/"+gws[i].Name < gws[j].Proxy+gws[j].Namespace+"/"+gws[j].Name
		})
		body, err := json.MarshalIndent(map[string]any{
			"leader":    st.leader,
			"proxies":   st.proxies,
			"processor": st.processor,
			"gateways":  gws,
			"orphans":   st.orphans,
			"updated":   st.updated,
		}, "", "  ")
		st.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(body, '\n'))
	})
}

func (in *Injector) state() *injectionStatus {
	if in.status == nil {
		in.status = newInjectionStatus()
	}
	return in.status
}

const maxOrphansShown = 100

// injectorMetrics are the injector's Prometheus metrics.
type injectorMetrics struct {
	gateways  *prometheus.GaugeVec
	writes    *prometheus.CounterVec
	processor prometheus.Gauge
	// sidecarMissing counts gateway pods running without their processor in sidecar mode.
	sidecarMissing *prometheus.GaugeVec
}

func newInjectorMetrics(reg prometheus.Registerer) *injectorMetrics {
	m := &injectorMetrics{
		gateways: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wafplane_injector_gateways",
			Help: "Gateways of other controllers the injector protects, by proxy type."}, []string{"proxy"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wafplane_injector_writes_total",
			Help: "Objects the injector created, updated or deleted, by kind, operation and result."}, []string{"kind", "op", "result"}),
		processor: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wafplane_injector_processor_available",
			Help: "1 when the processor Service the injected gateways call has ready endpoints, 0 when not."}),
		sidecarMissing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wafplane_injector_sidecar_missing_pods",
			Help: "Running pods of gateways in sidecar mode that have no processor container, by proxy type."}, []string{"proxy"}),
	}
	if reg != nil {
		reg.MustRegister(m.gateways, m.writes, m.processor, m.sidecarMissing)
	}
	return m
}
