package processor

import "testing"

func TestScratchSQLi(t *testing.T) {
	rule := map[string]any{"id": "x", "name": "x", "tags": map[string]any{"type": "x", "category": "x"},
		"conditions": []any{map[string]any{"operator": "is_sqli", "parameters": map[string]any{
			"inputs": []any{map[string]any{"address": "server.request.query"}}}}}, "transformers": []any{}}
	h := ruleHandle(t, rule)
	for _, q := range []string{"john%2Bor@example.com", "john.or@example.com", "or@example.com", "john%2Band@example.com", "john%2Bxor@example.com", "john%2Bdiv@example.com", "john%2Bx@example.com", "john or@example.com", "a%2Bor@b.co", "1%2Bor@x", "x%2Bor%40y", "john%2Bor@example", "john%2Bor%20@example.com", "me%2Bnot@x.com", "me%2Blike@x.com"} {
		got := matches(t, h, ruleRequest{Path: "/?a=" + q})
		if len(got) > 0 {
			t.Logf("FLAG %s %v", q, got[0].Parameters[0].Highlight)
		} else {
			t.Logf("ok   %s", q)
		}
	}
}
