package processor

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Policy is the operator's file of blocked IPs and users, custom rules, exclusions and
// rule overrides. It is applied on top of the ruleset without a restart.
type Policy struct {
	BlockedIPs   []BlockedValue   `json:"blocked_ips,omitempty"`
	BlockedUsers []BlockedValue   `json:"blocked_users,omitempty"`
	CustomRules  []map[string]any `json:"custom_rules,omitempty"`
	Actions      []map[string]any `json:"actions,omitempty"` // custom actions: block pages, redirects
	Exclusions   []Exclusion      `json:"exclusions,omitempty"`
	Rules        []RuleOverride   `json:"rules,omitempty"`

	// Rulesets switches whole rulesets: only "wafplane" can be turned off (the recommended
	// ruleset is the floor). Sensitivity (low, medium, high) picks which wafplane rules are on.
	Rulesets    map[string]Switch `json:"rulesets,omitempty"`
	Sensitivity Sensitivity       `json:"sensitivity,omitempty"`
}

// settings are the ruleset switches the policy asks for, defaults where it is silent.
func (p *Policy) settings() RulesetSettings {
	s := DefaultRulesetSettings
	if on, ok := p.Rulesets[RulesetWafplane]; ok {
		s.Wafplane = bool(on)
	}
	if p.Sensitivity != "" {
		s.Sensitivity = p.Sensitivity
	}
	return s
}

// BlockedValue is an IP, a CIDR or a user id, blocked until Expires (forever when empty).
type BlockedValue struct {
	Value   string     `json:"value"`
	Expires *time.Time `json:"expires,omitempty"`
}

// Exclusion stops rules from matching. Every condition given must hold: the request path
// starts with one of Paths and the client IP is in one of IPs. Rules limits it to those rule
// ids (all rules when empty). Parameters, when given, removes only those parameter names
// from inspection instead of skipping the rules.
type Exclusion struct {
	ID         string   `json:"id"`
	Rules      []string `json:"rules,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	IPs        []string `json:"ips,omitempty"`
	Parameters []string `json:"parameters,omitempty"`
}

// RuleOverride turns a rule off, or changes whether it blocks.
type RuleOverride struct {
	ID      string `json:"id"`
	Enabled *bool  `json:"enabled,omitempty"`
	Block   *bool  `json:"block,omitempty"`
}

// LoadPolicy reads and validates a policy file.
func LoadPolicy(path string) (*Policy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p Policy
	if err := yaml.UnmarshalStrict(raw, &p); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return &p, nil
}

// Validate names the entry and field of every problem.
func (p *Policy) Validate() error {
	var errs []error
	for i, b := range p.BlockedIPs {
		if _, err := parseIPOrPrefix(b.Value); err != nil {
			errs = append(errs, fmt.Errorf("blocked_ips[%d].value: %w", i, err))
		}
	}
	for i, b := range p.BlockedUsers {
		if b.Value == "" {
			errs = append(errs, fmt.Errorf("blocked_users[%d].value: empty", i))
		}
	}
	for i, r := range p.CustomRules {
		if id, _ := r["id"].(string); id == "" {
			errs = append(errs, fmt.Errorf("custom_rules[%d].id: missing", i))
		}
	}
	for i, a := range p.Actions {
		if id, _ := a["id"].(string); id == "" {
			errs = append(errs, fmt.Errorf("actions[%d].id: missing", i))
		}
	}
	for i, x := range p.Exclusions {
		if x.ID == "" {
			errs = append(errs, fmt.Errorf("exclusions[%d].id: missing", i))
		}
		if len(x.Rules)+len(x.Paths)+len(x.IPs)+len(x.Parameters) == 0 {
			errs = append(errs, fmt.Errorf("exclusions[%d] (%s): needs rules, paths, ips or parameters", i, x.ID))
		}
		for j, ip := range x.IPs {
			if _, err := parseIPOrPrefix(ip); err != nil {
				errs = append(errs, fmt.Errorf("exclusions[%d].ips[%d]: %w", i, j, err))
			}
		}
		for j, path := range x.Paths {
			if !strings.HasPrefix(path, "/") {
				errs = append(errs, fmt.Errorf("exclusions[%d].paths[%d] %q: must start with /", i, j, path))
			}
		}
	}
	for name := range p.Rulesets {
		if name != RulesetWafplane {
			errs = append(errs, fmt.Errorf("rulesets.%s: unknown ruleset, only %q can be switched", name, RulesetWafplane))
		}
	}
	if p.Sensitivity != "" && !p.Sensitivity.valid() {
		errs = append(errs, fmt.Errorf("sensitivity %q: want low, medium or high", p.Sensitivity))
	}
	for i, r := range p.Rules {
		if r.ID == "" {
			errs = append(errs, fmt.Errorf("rules[%d].id: missing", i))
		}
		if r.Enabled == nil && r.Block == nil {
			errs = append(errs, fmt.Errorf("rules[%d] (%s): set enabled or block", i, r.ID))
		}
	}
	return errors.Join(errs...)
}

func parseIPOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// fragment turns the policy into a libddwaf configuration fragment.
func (p *Policy) fragment() map[string]any {
	out := map[string]any{}
	var data []any
	if len(p.BlockedIPs) > 0 {
		data = append(data, ruleData("blocked_ips", "ip_with_expiration", p.BlockedIPs))
	}
	if len(p.BlockedUsers) > 0 {
		data = append(data, ruleData("blocked_users", "data_with_expiration", p.BlockedUsers))
	}
	if data != nil {
		out["rules_data"] = data
	}
	if len(p.CustomRules) > 0 {
		rules := make([]any, len(p.CustomRules))
		for i, r := range p.CustomRules {
			rules[i] = r
		}
		out["custom_rules"] = rules
	}
	if len(p.Actions) > 0 {
		actions := make([]any, len(p.Actions))
		for i, a := range p.Actions {
			actions[i] = a
		}
		out["actions"] = actions
	}
	if len(p.Exclusions) > 0 {
		var xs []any
		for _, x := range p.Exclusions {
			xs = append(xs, x.fragment())
		}
		out["exclusions"] = xs
	}
	if len(p.Rules) > 0 {
		var overrides []any
		for _, r := range p.Rules {
			o := map[string]any{"rules_target": []any{map[string]any{"rule_id": r.ID}}}
			if r.Enabled != nil {
				o["enabled"] = *r.Enabled
			}
			if r.Block != nil {
				if *r.Block {
					o["on_match"] = []any{"block"}
				} else {
					o["on_match"] = []any{}
				}
			}
			overrides = append(overrides, o)
		}
		out["rules_override"] = overrides
	}
	return out
}

func ruleData(id, typ string, values []BlockedValue) map[string]any {
	var entries []any
	for _, v := range values {
		var exp int64 // 0 means never
		if v.Expires != nil {
			exp = max(v.Expires.Unix(), 1)
		}
		entries = append(entries, map[string]any{"value": v.Value, "expiration": exp})
	}
	return map[string]any{"id": id, "type": typ, "data": entries}
}

// inspectedParameterAddresses are the addresses whose parameter names an exclusion can drop.
var inspectedParameterAddresses = []string{
	"server.request.query", "server.request.body", "server.request.cookies", "server.request.headers.no_cookies",
}

func (x Exclusion) fragment() map[string]any {
	f := map[string]any{"id": x.ID}
	if len(x.Rules) > 0 {
		var targets []any
		for _, id := range x.Rules {
			targets = append(targets, map[string]any{"rule_id": id})
		}
		f["rules_target"] = targets
	}
	var conds []any
	if len(x.Paths) > 0 {
		alts := make([]string, len(x.Paths))
		for i, p := range x.Paths {
			alts[i] = regexp.QuoteMeta(strings.TrimSuffix(p, "/"))
		}
		conds = append(conds, map[string]any{
			"operator": "match_regex",
			"parameters": map[string]any{
				"inputs":  []any{map[string]any{"address": "server.request.uri.raw"}},
				"regex":   "^(?:" + strings.Join(alts, "|") + ")(?:[/?#]|$)",
				"options": map[string]any{"case_sensitive": true},
			},
		})
	}
	if len(x.IPs) > 0 {
		list := make([]any, len(x.IPs))
		for i, ip := range x.IPs {
			list[i] = ip
		}
		conds = append(conds, map[string]any{
			"operator": "ip_match",
			"parameters": map[string]any{
				"inputs": []any{map[string]any{"address": "http.client_ip"}},
				"list":   list,
			},
		})
	}
	if conds != nil {
		f["conditions"] = conds
	}
	if len(x.Parameters) > 0 {
		var inputs []any
		for _, addr := range inspectedParameterAddresses {
			for _, name := range x.Parameters {
				inputs = append(inputs, map[string]any{"address": addr, "key_path": []any{name}})
			}
		}
		f["inputs"] = inputs
	}
	return f
}
