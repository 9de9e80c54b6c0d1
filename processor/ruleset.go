package processor

import (
	_ "embed"
	"fmt"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// wafplaneRulesetYAML is the team's own ruleset (ruleset/wafplane.yaml), loaded beside the
// recommended one unless the policy turns it off.
//
//go:embed ruleset/wafplane.yaml
var wafplaneRulesetYAML []byte

// Configuration paths of the wafplane ruleset and of the sensitivity switches.
const (
	pathWafplaneRuleset = "wafplane/ruleset"
	pathSensitivity     = "wafplane/sensitivity"
)

// Names of the rulesets a policy can switch, and the module tag of wafplane's rules.
const (
	RulesetRecommended = "recommended"
	RulesetWafplane    = "wafplane"
)

// Sensitivity trades detection for quiet: each wafplane rule is on from one level up.
type Sensitivity string

const (
	SensitivityLow    Sensitivity = "low"
	SensitivityMedium Sensitivity = "medium"
	SensitivityHigh   Sensitivity = "high"

	DefaultSensitivity = SensitivityMedium
)

var sensitivityLevels = []Sensitivity{SensitivityLow, SensitivityMedium, SensitivityHigh}

func (s Sensitivity) valid() bool { return slices.Contains(sensitivityLevels, s) }

// WafplaneRule is one rule of the wafplane ruleset, as /rules lists it.
type WafplaneRule struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Type        string      `json:"type"`
	Sensitivity Sensitivity `json:"sensitivity"`
	Enabled     bool        `json:"enabled"`
}

// RulesetInfo says what one ruleset contributes.
type RulesetInfo struct {
	Name        string         `json:"name"`
	Version     string         `json:"version,omitempty"`
	Enabled     bool           `json:"enabled"`
	Sensitivity Sensitivity    `json:"sensitivity,omitempty"`
	Loaded      int            `json:"rules_loaded"` // for wafplane: those on at this sensitivity
	Rules       []WafplaneRule `json:"rules,omitempty"`
	// Replaces lists the recommended rules turned off in favour of wafplane's.
	Replaces []string `json:"replaces,omitempty"`
}

// wafplaneRuleset parses the embedded ruleset into a libddwaf configuration fragment, and
// lists the recommended rules it replaces below high sensitivity. x-inputs holds only the
// YAML anchors that the rules share.
func wafplaneRuleset() (fragment map[string]any, replaced []string, err error) {
	if err := yaml.Unmarshal(wafplaneRulesetYAML, &fragment); err != nil {
		return nil, nil, fmt.Errorf("wafplane ruleset: %w", err)
	}
	m, _ := fragment[keyReplaced].(map[string]any)
	for id := range m {
		replaced = append(replaced, id)
	}
	sort.Strings(replaced)
	delete(fragment, keyReplaced)
	delete(fragment, "x-inputs")
	rules, _ := fragment["rules"].([]any)
	withMinLength(rules)
	return fragment, replaced, nil
}

const keyReplaced = "x-replaced-below-high"

// wafplaneRules lists the ruleset's rules with whether each is on at s.
func wafplaneRules(rs map[string]any, s Sensitivity) []WafplaneRule {
	rules, _ := rs["rules"].([]any)
	out := make([]WafplaneRule, 0, len(rules))
	for _, r := range rules {
		m, _ := r.(map[string]any)
		tags, _ := m["tags"].(map[string]any)
		level := Sensitivity(str(tags["sensitivity"]))
		out = append(out, WafplaneRule{ID: str(m["id"]), Name: str(m["name"]), Type: str(tags["type"]),
			Sensitivity: level, Enabled: levelIndex(level) <= levelIndex(s)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// levelIndex orders the levels; an unknown level is above them all.
func levelIndex(s Sensitivity) int {
	if i := slices.Index(sensitivityLevels, s); i >= 0 {
		return i
	}
	return len(sensitivityLevels)
}

// sensitivityFragment turns off the wafplane rules above level s, and below high the
// recommended rules that wafplane's replace. Overrides by rule id in the policy (rules:) come
// later and win, so a user can still turn any one rule back on.
func sensitivityFragment(s Sensitivity, replaced []string) map[string]any {
	var overrides []any
	if s != SensitivityHigh && len(replaced) > 0 {
		targets := make([]any, len(replaced))
		for i, id := range replaced {
			targets[i] = map[string]any{"rule_id": id}
		}
		overrides = append(overrides, map[string]any{"rules_target": targets, "enabled": false})
	}
	for _, l := range sensitivityLevels[levelIndex(s)+1:] {
		overrides = append(overrides, map[string]any{
			"rules_target": []any{map[string]any{"tags": map[string]any{"module": RulesetWafplane, "sensitivity": string(l)}}},
			"enabled":      false,
		})
	}
	if overrides == nil {
		return nil
	}
	return map[string]any{"rules_override": overrides}
}

// RulesetSettings are the policy's switches over whole rulesets.
type RulesetSettings struct {
	Wafplane    bool
	Sensitivity Sensitivity
}

// DefaultRulesetSettings: both rulesets at medium sensitivity.
var DefaultRulesetSettings = RulesetSettings{Wafplane: true, Sensitivity: DefaultSensitivity}

// Switch is on or off; YAML's on/off/true/false and the strings "on"/"off" all read.
type Switch bool

func (s *Switch) UnmarshalJSON(b []byte) error {
	switch strings.Trim(strings.ToLower(string(b)), `"`) {
	case "true", "on", "yes":
		*s = true
	case "false", "off", "no":
		*s = false
	default:
		return fmt.Errorf("want on or off, got %s", b)
	}
	return nil
}
