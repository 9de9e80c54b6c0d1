package processor

import (
	"regexp"
	"strings"
)

// Values of security events are obfuscated by libddwaf first (obfuscatorKeyRegex and
// obfuscatorValueRegex in engine.go, which extend Datadog's tracers' patterns with session
// ids, card data, one-time codes and any *secret* or *key* name). libddwaf decides by key
// name; what only the value shows is done here, on every value and highlight, before the
// event reaches /events, the log or the console: cookie values are shown only as far as a
// rule matched them; card numbers, CVV-labelled codes and social security numbers in free
// text are masked; session tokens carried as path parameters (;jsessionid=…) are masked
// in values and in the request path.

const (
	redacted           = "<Redacted>"
	redactedCard       = "<Redacted card number>"
	maxCookieHighlight = 64
	cookiesAddress     = "server.request.cookies"
)

// cardNumber finds digit runs shaped like a payment card number (13 to 19 digits, spaces
// or dashes between groups); luhn tells real ones from other long numbers.
var cardNumber = regexp.MustCompile(`\d(?:[ -]?\d){12,18}`)

var (
	// cvvLabelled is a card security code after its label: "cvv 739", "CVC2: 1234".
	cvvLabelled = regexp.MustCompile(`(?i)\b(cvv2?|cvc2?|cvn|cid|csc|security[ _-]?code)\b([^\w\r\n]{0,4})\d{3,4}\b`)
	// ssnLabelled is a social security number after its label, in any grouping.
	ssnLabelled = regexp.MustCompile(`(?i)\b(ssn|social[ _-]?security(?:[ _-]?(?:number|no))?)\b([^\w\r\n]{0,4})\d{3}[ -]?\d{2}[ -]?\d{4}\b`)
	// ssnDashed is a number shaped as a social security number, 078-05-1120; validSSN
	// keeps out what the SSA never issues.
	ssnDashed = regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b`)
	// sessionPathParam is a session token carried as a path parameter, the way servlet
	// containers and PHP rewrite URLs when cookies are off: /shop;jsessionid=…/item.
	sessionPathParam = regexp.MustCompile(`(?i);(jsessionid|phpsessid|aspsessionid\w*|sessionid|session_id|session|sessid|sid|cfid|cftoken|token|auth)=[^/;?#]*`)
)

const (
	redactedSSN = "<Redacted ssn>"
	redactedCVV = "<Redacted>"
)

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
	p.Value = redactText(p.Value)
	for i, h := range p.Highlight {
		p.Highlight[i] = redactText(h)
	}
}

// redactText masks what identifies a person or a session wherever it is in a value.
func redactText(s string) string {
	s = maskCards(s)
	if len(s) < 5 {
		return s
	}
	s = cvvLabelled.ReplaceAllString(s, "${1}${2}"+redactedCVV)
	s = ssnLabelled.ReplaceAllString(s, "${1}${2}"+redactedSSN)
	s = ssnDashed.ReplaceAllStringFunc(s, func(m string) string {
		if validSSN(m) {
			return redactedSSN
		}
		return m
	})
	return redactPathParams(s)
}

// redactPathParams masks session tokens carried as path parameters.
func redactPathParams(s string) string {
	if !strings.Contains(s, ";") {
		return s
	}
	return sessionPathParam.ReplaceAllString(s, ";${1}="+redacted)
}

// validSSN tells an issuable social security number (area not 000, 666 or 9xx, group not
// 00, serial not 0000) from other numbers of the same shape.
func validSSN(s string) bool {
	area, group, serial := s[0:3], s[4:6], s[7:11]
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
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
