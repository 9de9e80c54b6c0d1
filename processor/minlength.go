package processor

import "regexp/syntax"

// withMinLength gives every match_regex condition of the rules that has none the shortest
// length its regex can match: libddwaf then skips shorter values without running the
// regex. Most values of API bodies and headers are short (ids, enums, tokens), and the
// wafplane rules' cost on a JSON body nearly halves. The length is counted in characters,
// which is never more than the bytes libddwaf counts, and transformers only shorten values,
// so no value that could match is skipped.
func withMinLength(rules []any) {
	for _, r := range rules {
		rule, _ := r.(map[string]any)
		conds, _ := rule["conditions"].([]any)
		for _, c := range conds {
			cond, _ := c.(map[string]any)
			params, _ := cond["parameters"].(map[string]any)
			re, ok := params["regex"].(string)
			if cond["operator"] != "match_regex" || !ok {
				continue
			}
			opts, _ := params["options"].(map[string]any)
			if opts == nil {
				opts = map[string]any{}
			}
			if _, set := opts["min_length"]; set {
				continue
			}
			if n := minMatchLength(re); n > 1 {
				opts["min_length"] = n
				params["options"] = opts
			}
		}
	}
}

// minMatchLength is the fewest characters a match of re has; 0 when it cannot be parsed.
func minMatchLength(re string) int {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return 0
	}
	return minLen(parsed)
}

func minLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpPlus:
		return minLen(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min * minLen(re.Sub[0])
	case syntax.OpConcat:
		n := 0
		for _, s := range re.Sub {
			n += minLen(s)
		}
		return n
	case syntax.OpAlternate:
		n := -1
		for _, s := range re.Sub {
			if m := minLen(s); n < 0 || m < n {
				n = m
			}
		}
		return max(n, 0)
	}
	return 0 // empty matches, anchors, word boundaries, *, ?
}
