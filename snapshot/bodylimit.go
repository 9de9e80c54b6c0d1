package snapshot

import (
	"fmt"

	"github.com/wafplane/wafplane/discovery"
)

// bodyLimitWarnings names the gateway's and routes' request body limits above what the
// processor accepts from stream metadata (Options.ProcessorMaxBodyLimit): they are served,
// but the processor inspects no more than its maximum.
func bodyLimitWarnings(g discovery.Gateway, maxLimit int64) []string {
	if maxLimit <= 0 {
		return nil
	}
	var out []string
	warn := func(field string, limit int64) {
		out = append(out, fmt.Sprintf("%s %d is above the processor's maximum body limit %d (--max-body-limit): %d bytes are inspected", field, limit, maxLimit, maxLimit))
	}
	if l := discovery.Resolve(g.Protection, nil).RequestBodyLimit; l > maxLimit {
		warn("protection.requestBodyLimit", l)
	}
	for i, r := range g.Routes {
		if r.Protection == nil || r.Protection.RequestBodyLimit == nil {
			continue
		}
		if l := *r.Protection.RequestBodyLimit; l > maxLimit {
			warn(fmt.Sprintf("routes[%d] %q: protection.requestBodyLimit", i, r.Name), l)
		}
	}
	return out
}
