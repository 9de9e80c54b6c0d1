// Command wafplane is the WAF control plane for Envoy: xDS server, ext_proc processor and
// admin endpoint in one binary. See the README for the subcommands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wafplane/wafplane/processor"
)

func main() {
	processor.TuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wafplane:", err)
		os.Exit(1)
	}
}
