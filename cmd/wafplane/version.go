package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/spf13/cobra"
)

// version, commit and date are set at build time by the Makefile (-ldflags -X); a plain
// `go build` from a checkout takes commit and date from the VCS stamp Go embeds.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// buildInfo is the commit and its date, "unknown" when neither source has them.
func buildInfo() (string, string) {
	c, d := commit, date
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			case s.Key == "vcs.modified" && s.Value == "true" && c != "" && !strings.HasSuffix(c, "-dirty"):
				c += "-dirty"
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	if d == "" {
		d = "unknown"
	}
	return c, d
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of wafplane and of its WAF",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, d := buildInfo()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "wafplane %s (commit %s, built %s, %s, libddwaf %s)\n",
				version, c, d, runtime.Version(), waf.Version())
			return err
		},
	}
}
