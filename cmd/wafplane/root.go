package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	var logs logOptions
	root := &cobra.Command{
		Use:           "wafplane",
		Short:         "WAF control plane for Envoy: xDS, ext_proc processor backed by libddwaf, admin endpoint",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	env := &envFlags{fs: root.PersistentFlags()}
	env.String(&logs.level, "log-level", "info", "log level: debug, info, warn or error")
	env.String(&logs.format, "log-format", "text", "log format: text or json")
	serve := newServeCommand(&logs)
	root.AddCommand(serve, newProcessorCommand(&logs), newBootstrapCommand(), newTranslateCommand(), newVersionCommand())
	// wafplane alone is wafplane serve.
	root.Flags().AddFlagSet(serve.Flags())
	root.RunE = serve.RunE
	root.Args = cobra.NoArgs
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if len(env.errs) > 0 {
			return errors.Join(env.errs...)
		}
		_, err := logs.logger(os.Stderr)
		return err
	}
	return root
}
