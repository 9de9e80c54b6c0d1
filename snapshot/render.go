package snapshot

import (
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
)

// Dump is a gateway's resources as plain JSON values (protojson field names, Anys
// expanded), for `wafplane translate`, the admin endpoint and the golden tests.
type Dump struct {
	Gateway          string            `json:"gateway"`
	Versions         map[string]string `json:"versions"`
	Listeners        []json.RawMessage `json:"listeners"`
	Routes           []json.RawMessage `json:"routes"`
	Clusters         []json.RawMessage `json:"clusters"`
	Endpoints        []json.RawMessage `json:"endpoints"`
	ExtensionConfigs []json.RawMessage `json:"extensionConfigs"`
	Secrets          []string          `json:"secrets,omitempty"` // names only: keys are never shown
}

// Dump renders the resources.
func (r *Resources) Dump() (Dump, error) {
	d := Dump{Gateway: r.Gateway, Versions: map[string]string{}}
	for _, s := range r.Secrets {
		d.Secrets = append(d.Secrets, s.Name)
	}
	lists := map[string]*[]json.RawMessage{
		"clusters": &d.Clusters, "endpoints": &d.Endpoints, "listeners": &d.Listeners,
		"routes": &d.Routes, "extensionConfigs": &d.ExtensionConfigs,
	}
	for _, t := range r.byType() {
		d.Versions[t.name] = r.Version(t.url)
		list, shown := lists[t.name]
		if !shown {
			continue // secrets: names only
		}
		*list = []json.RawMessage{}
		for _, item := range t.items {
			// protojson's spacing is deliberately unstable; a round trip through
			// encoding/json makes the text stable for goldens and diffs.
			b, err := protojson.Marshal(item)
			if err != nil {
				return Dump{}, err
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				return Dump{}, err
			}
			b, err = json.Marshal(v)
			if err != nil {
				return Dump{}, err
			}
			*list = append(*list, b)
		}
	}
	return d, nil
}
