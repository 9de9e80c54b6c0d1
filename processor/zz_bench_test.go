package processor

import (
	"os"
	"testing"
	"time"

	waf "github.com/DataDog/go-libddwaf/v4"
)

func BenchmarkScratchGET(b *testing.B) {
	for _, f := range []string{"", "/tmp/rec.json", "/tmp/rec-nofp.json"} {
		b.Run("rules="+f, func(b *testing.B) {
			e, err := newEngine(f)
			if err != nil {
				b.Fatal(err)
			}
			defer e.close()
			bc := benchCases()[0]
			req := parseRequestHeaders(bc.x.requestHeaderMap())
			_ = os.Getenv
			for b.Loop() {
				ctx, _, _ := e.acquire(time.Second)
				ctx.Run(waf.RunAddressData{Persistent: req.addresses("198.51.100.7", ""), TimerKey: timerKey})
				ctx.Run(waf.RunAddressData{Persistent: map[string]any{addrResponseStatus: "200", addrResponseHeaders: map[string][]string{"content-type": {"text/html"}}}, TimerKey: timerKey})
				ctx.Close()
			}
		})
	}
}
