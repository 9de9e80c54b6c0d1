package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wafplane/wafplane/discovery"
	"github.com/wafplane/wafplane/discovery/file"
	"github.com/wafplane/wafplane/snapshot"
)

func newTranslateCommand() *cobra.Command {
	var path, output, processorAddress string
	var processorTLS bool
	cmd := &cobra.Command{
		Use:   "translate",
		Short: "Print the xDS resources each gateway's Envoys would get, offline",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVarP(&path, "file", "f", "", "gateways YAML file (default: the embedded default)")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "yaml or json")
	cmd.Flags().StringVar(&processorAddress, "processor-address", snapshot.DefaultProcessorAddress, "host:port Envoys dial to reach the processor")
	cmd.Flags().BoolVar(&processorTLS, "processor-tls", false, "Envoys speak TLS to the processor")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		state := file.Default()
		if path != "" {
			var err error
			if state, err = file.Load(path); err != nil {
				return err
			}
		}
		out, err := translate(state, snapshot.Options{ProcessorAddress: processorAddress, ProcessorTLS: processorTLS}, output)
		if out != nil {
			if _, werr := cmd.OutOrStdout().Write(out); werr != nil {
				return werr
			}
		}
		return err
	}
	return cmd
}

// translate renders the good gateways and returns the failures of the others as the error.
func translate(state discovery.State, opts snapshot.Options, format string) ([]byte, error) {
	if format != "yaml" && format != "json" {
		return nil, fmt.Errorf("--output %q: want yaml or json", format)
	}
	var dumps []snapshot.Dump
	var errs []error
	for _, r := range snapshot.Translate(state, opts) {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		d, err := r.Resources.Dump()
		if err != nil {
			return nil, err
		}
		dumps = append(dumps, d)
	}
	b, err := json.Marshal(map[string][]snapshot.Dump{"gateways": dumps})
	if err != nil {
		return nil, err
	}
	out, err := reformat(b, format)
	if err != nil {
		return nil, err
	}
	return out, errors.Join(errs...)
}
