package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	waf "github.com/DataDog/go-libddwaf/v4"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of wafplane and of its WAF",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			commit := "unknown"
			if info, ok := debug.ReadBuildInfo(); ok {
				for _, s := range info.Settings {
					if s.Key == "vcs.revision" {
						commit = s.Value
					}
				}
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "wafplane %s (commit %s, %s, libddwaf %s)\n",
				version, commit, runtime.Version(), waf.Version())
			return err
		},
	}
}
