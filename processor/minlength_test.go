package processor

import "testing"

func TestMinMatchLength(t *testing.T) {
	for re, want := range map[string]int{
		`abc`:                         3,
		`(?i)union\s+select`:          12,
		`a|bc`:                        1,
		`^\s*(?:cat|ls)\b`:            2,
		`x{3,5}y?`:                    3,
		`[\r\n]\s*(?:to|cc)\s*:`:      4,
		`(?:\.{2,}[\\/;]+){3}`:        9,
		`嘊|嘍`:                         1,
		`\$\{[^}]{0,80}?\$\{`:         4,
		`(unbalanced`:                 0,
		`(?:)`:                        0,
		`.*`:                          0,
		`\bjava\.lang\.(?:Runtime)\b`: 17,
	} {
		if got := minMatchLength(re); got != want {
			t.Errorf("minMatchLength(%q) = %d, want %d", re, got, want)
		}
	}
}

// Every regex of the wafplane ruleset parses in Go's RE2 syntax, so each gets its bound.
func TestWafplaneRegexesGetAMinimumLength(t *testing.T) {
	rs, _, err := wafplaneRuleset()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs["rules"].([]any) {
		rule := r.(map[string]any)
		for _, c := range rule["conditions"].([]any) {
			p := c.(map[string]any)["parameters"].(map[string]any)
			re, ok := p["regex"].(string)
			if !ok {
				continue
			}
			if minMatchLength(re) == 0 {
				t.Errorf("%s: regex %q does not parse or matches the empty string", rule["id"], re)
			}
		}
	}
}
