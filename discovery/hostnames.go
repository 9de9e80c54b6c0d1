package discovery

import "strings"

// IntersectHostnames is the Gateway API hostname intersection of a listener and a route: the more
// specific name of each matching pair. "*" stands for any.
func IntersectHostnames(listener string, route []string) []string {
	if listener == "" {
		listener = "*"
	}
	if len(route) == 0 {
		return []string{listener}
	}
	seen := map[string]bool{}
	var out []string
	for _, h := range route {
		var m string
		switch {
		case listener == "*":
			m = h
		case HostMatches(listener, h):
			m = h
		case HostMatches(h, listener):
			m = listener
		}
		if m != "" && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// HostMatches is true when pattern (a name or "*.suffix") covers name.
func HostMatches(pattern, name string) bool {
	if pattern == name {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(name, suffix) && len(name) > len(suffix)
	}
	return false
}

// HostOrAny is the hostname, or "*" for a listener without one.
func HostOrAny(h string) string {
	if h == "" {
		return "*"
	}
	return h
}
