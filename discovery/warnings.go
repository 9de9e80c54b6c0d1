package discovery

import "fmt"

// Warnings are what is valid but probably not meant: a rule with neither backends nor a
// redirect answers every request 500, as the Gateway API says, which a typo also causes.
func (g *Gateway) Warnings() []string {
	var out []string
	for i, r := range g.Routes {
		for j, rule := range r.Rules {
			if len(rule.Backends) == 0 && rule.Filters.Redirect == nil {
				out = append(out, fmt.Sprintf("gateway %s: routes[%d] (%s).rules[%d]: no backends and no redirect: every request it matches is answered 500",
					g.Key(), i, r.Name, j))
			}
		}
	}
	return out
}
