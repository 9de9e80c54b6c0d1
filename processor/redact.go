package processor

import (
	"regexp"
	"strings"
)

// Values of security events are obfuscated by libddwaf first (obfuscatorKeyRegex and
// obfuscatorValueRegex in engine.go, which extend Datadog's tracers' patterns with session
// ids, card data, one-time codes and any *secret* or *key* name). What it cannot know is
// done here: cookie values are shown only as far as a rule matched them, and card numbers
// anywhere are masked.

const (
	redacted           = "<Redacted>"
	redactedCard       = "<Redacted card number>"
	maxCookieHighlight = 64
	cookiesAddress     = "server.request.cookies"
)

// cardNumber finds digit runs shaped like a payment card number (13 to 19 digits, spaces
// or dashes between groups); luhn tells real ones from other long numbers.
var cardNumber = regexp.MustCompile(`\d(?:[ -]?\d){12,18}`)

func redactParameter(p *MatchParameter) {
	if p.Address == cookiesAddress {
		// A cookie is a credential more often than not: the part that matched, capped.
		p.Value = redacted
		for i, h := range p.Highlight {
			if len(h) > maxCookieHighlight {
				p.Highlight[i] = h[:maxCookieHighlight] + "…"
			}
		}
	}
	p.Value = maskCards(p.Value)
	for i, h := range p.Highlight {
		p.Highlight[i] = maskCards(h)
	}
}

func maskCards(s string) string {
	if len(s) < 13 {
		return s
	}
	return cardNumber.ReplaceAllStringFunc(s, func(m string) string {
		if luhn(m) {
			return redactedCard
		}
		return m
	})
}

// luhn checks the Luhn digit of the digits of s.
func luhn(s string) bool {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
	sum, double := 0, false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
