package file

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/wafplane/wafplane/discovery"
)

//go:embed default.yaml
var defaultGateways []byte

// Default is the embedded default state: gateway default/demo on 0.0.0.0:10000 routing
// / to 127.0.0.1:8080 in block mode.
func Default() discovery.State {
	s, err := Parse(defaultGateways)
	if err != nil {
		panic("embedded default.yaml: " + err.Error()) // a build defect, caught by its test
	}
	return s
}

// Load reads and parses a gateways file.
func Load(path string) (discovery.State, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return discovery.State{}, err
	}
	s, err := Parse(raw)
	if err != nil {
		return discovery.State{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ErrNoGateways is a file with no document, or one without a gateways key: most often a
// file caught while it is written, so it never means "remove every gateway".
var ErrNoGateways = errors.New(`no "gateways" key (the file is empty or holds only comments); to remove every gateway write "gateways: []"`)

// Parse reads a gateways document strictly: unknown fields and a gateway named twice are
// errors. Problems inside one gateway are left to Gateway.Validate, so that one bad
// gateway does not hold back the others.
func Parse(raw []byte) (discovery.State, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return discovery.State{}, explain(raw, err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil || top["gateways"] == nil || string(top["gateways"]) == "null" {
		return discovery.State{}, ErrNoGateways
	}
	var s discovery.State
	if err := yaml.UnmarshalStrict(raw, &s); err != nil {
		return discovery.State{}, explain(raw, err)
	}
	seen := map[string]int{}
	for i := range s.Gateways {
		g := &s.Gateways[i]
		unYAMLMode(&g.Protection)
		for j := range g.Routes {
			if g.Routes[j].Protection != nil {
				unYAMLMode(g.Routes[j].Protection)
			}
		}
		if j, ok := seen[g.Key()]; ok {
			return discovery.State{}, fmt.Errorf("gateways[%d]: %s is already defined by gateways[%d]", i, g.Key(), j)
		}
		seen[g.Key()] = i
	}
	return s, nil
}

// unYAMLMode undoes a YAML 1.1 trap: a bare `mode: off` is the boolean false, which
// arrives here as the string "false". A quoted "false" means the same, so nothing is lost.
func unYAMLMode(p *discovery.Protection) {
	if p.Mode == "false" {
		p.Mode = discovery.ModeOff
	}
}
