package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/wafplane/wafplane/snapshot"
	"github.com/wafplane/wafplane/xds/pki"
)

type bootstrapFlags struct {
	gateway, xdsAddress, nodeID, output string
	adminPort                           int
	// certDir: issue the gateway's xDS client certificate there, from the CA in caDir, and
	// point the bootstrap at it. mountedCertDir: point at certificates that are already
	// there (a Secret mounted into a provisioned Envoy).
	certDir, caDir, mountedCertDir string
}

func newBootstrapCommand() *cobra.Command {
	var f bootstrapFlags
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Print an Envoy bootstrap that gets a gateway's configuration from wafplane over delta ADS",
		Args:  cobra.NoArgs,
	}
	env := &envFlags{fs: cmd.Flags()}
	env.String(&f.gateway, "gateway", "default/demo", "gateway namespace/name; it becomes the node cluster")
	env.String(&f.xdsAddress, "xds-address", "127.0.0.1:18000", "host:port of wafplane's xDS server as Envoy reaches it")
	env.String(&f.nodeID, "node-id", "", "node id, unique per Envoy (default <namespace>-<name>; Envoy's --service-node overrides it)")
	env.Int(&f.adminPort, "admin-port", 9901, "Envoy admin port on 127.0.0.1 (0 disables)")
	env.String(&f.certDir, "cert-dir", "", "issue the gateway's xDS client certificate (tls.crt, tls.key, ca.crt) into this directory and use it: needed when xDS is not on loopback")
	env.String(&f.caDir, "ca-dir", defaultCADir(), "where `wafplane serve` keeps its xDS CA (its --xds-ca-dir)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "yaml", "yaml or json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(env.errs) > 0 {
			return errors.Join(env.errs...)
		}
		if f.certDir != "" {
			if err := f.issueClientCert(); err != nil {
				return err
			}
		}
		b, err := f.bootstrap()
		if err != nil {
			return err
		}
		out, err := render(b, f.output)
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(out)
		return err
	}
	return cmd
}

// bootstrap checks the flags and builds the bootstrap (snapshot.Bootstrap).
func (f bootstrapFlags) bootstrap() (*bootstrapv3.Bootstrap, error) {
	ns, name, ok := strings.Cut(f.gateway, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("--gateway %q: want namespace/name", f.gateway)
	}
	host, p, err := net.SplitHostPort(f.xdsAddress)
	port, perr := strconv.ParseUint(p, 10, 16)
	if err != nil || perr != nil || host == "" || port == 0 {
		return nil, fmt.Errorf("--xds-address %q: want host:port", f.xdsAddress)
	}
	if f.adminPort < 0 || f.adminPort > 65535 {
		return nil, fmt.Errorf("--admin-port %d: out of range", f.adminPort)
	}
	id := f.nodeID
	if id == "" {
		id = ns + "-" + name
	}
	certDir := f.mountedCertDir
	if f.certDir != "" {
		if certDir, err = filepath.Abs(f.certDir); err != nil {
			return nil, err
		}
	}
	return snapshot.Bootstrap(snapshot.BootstrapOptions{Gateway: f.gateway, NodeID: id,
		XDSHost: host, XDSPort: uint32(port), AdminPort: uint32(f.adminPort), CertDir: certDir})
}

// issueClientCert writes the gateway's client certificate, signed by the CA of
// `wafplane serve`, into --cert-dir.
func (f bootstrapFlags) issueClientCert() error {
	ca, err := pki.LoadDir(f.caDir, false, time.Now())
	if err != nil {
		return fmt.Errorf("--ca-dir: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueGateway(f.gateway, time.Now())
	if err != nil {
		return fmt.Errorf("--gateway: %w", err)
	}
	if err := pki.WriteClient(f.certDir, certPEM, keyPEM, ca.BundlePEM()); err != nil {
		return fmt.Errorf("--cert-dir: %w", err)
	}
	return nil
}

// defaultCADir is where serve keeps its xDS CA outside Kubernetes.
func defaultCADir() string {
	state := os.Getenv("XDG_STATE_HOME")
	if state == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "wafplane-ca")
		}
		state = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(state, "wafplane", "ca")
}

// render prints a message as YAML or JSON with protojson's field names, stably.
func render(m proto.Message, format string) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	return reformat(b, format)
}

// reformat turns JSON into stable indented JSON or YAML.
func reformat(b []byte, format string) ([]byte, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	switch format {
	case "yaml":
		return yaml.Marshal(v)
	case "json":
		out, err := json.MarshalIndent(v, "", "  ")
		return append(out, '\n'), err
	}
	return nil, fmt.Errorf("--output %q: want yaml or json", format)
}
