package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/wafplane/wafplane/discovery/kubernetes"
	"github.com/wafplane/wafplane/xds/pki"
)

// loopback says whether a listen address is reachable from this host only.
func loopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// kubeCA is the CA Secret of wafplane's namespace, loaded once: xDS mTLS and the sidecar
// webhook's serving certificate share it. caRun keeps it fresh, once.
func (f *serveFlags) kubeCA(ctx context.Context, log *slog.Logger) (*kubernetes.CAStore, error) {
	if f.caStore != nil {
		return f.caStore, nil
	}
	kc, err := f.kube.clientset()
	if err != nil {
		return nil, err
	}
	store := &kubernetes.CAStore{Client: kc, Namespace: f.kube.namespace, Name: f.xdsCASecret, Log: log}
	if _, err := store.Load(ctx); err != nil {
		return nil, fmt.Errorf("--xds-ca-secret: %w", err)
	}
	f.caStore = store
	if f.caCheckInterval <= 0 {
		return nil, fmt.Errorf("--ca-check-interval %v: want a positive duration", f.caCheckInterval)
	}
	f.caRun = func(ctx context.Context) error { return store.Run(ctx, f.caCheckInterval) }
	return store, nil
}

// xdsCA finds the CA of mTLS on xDS (a directory with --source=file, a Secret in
// Kubernetes) and the names Envoys dial. It returns the current CA (nil when xDS is
// plaintext) and the names; in Kubernetes f.caRun keeps the CA fresh.
func (f *serveFlags) xdsCA(ctx context.Context, log *slog.Logger) (func() *pki.CA, []string, error) {
	if !f.xdsTLS {
		if loopback(f.xdsAddress) {
			log.Info("xDS is plaintext on loopback: only Envoys on this host can reach it", "address", f.xdsAddress)
		} else {
			log.Warn("xDS is plaintext and unauthenticated (--xds-tls=false): anyone who reaches it gets every gateway's configuration and TLS keys; use it in labs only",
				"address", f.xdsAddress)
		}
		return nil, nil, nil
	}
	hosts := f.xdsServerNames
	var current func() *pki.CA
	if f.source == "kubernetes" {
		store, err := f.kubeCA(ctx, log)
		if err != nil {
			return nil, nil, err
		}
		current = store.Current
		if len(hosts) == 0 {
			svc := fmt.Sprintf("%s.%s", f.kube.service, f.kube.namespace)
			hosts = []string{f.kube.service, svc, svc + ".svc", f.kube.serviceHost()}
		}
	} else {
		ca, err := pki.LoadDir(f.xdsCADir, true, time.Now())
		if err != nil {
			return nil, nil, fmt.Errorf("--xds-ca-dir: %w", err)
		}
		current = func() *pki.CA { return ca }
		log.Info("xDS CA", "dir", f.xdsCADir, "ca", ca.Fingerprint(), "expires", ca.Cert.NotAfter)
		if len(hosts) == 0 {
			hosts = []string{"localhost", "127.0.0.1", "::1"}
			if name, err := os.Hostname(); err == nil {
				hosts = append(hosts, name)
			}
			if host, _, err := net.SplitHostPort(f.xdsAddress); err == nil && host != "" {
				if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
					hosts = append(hosts, host)
				}
			}
		}
	}
	log.Info("xDS requires client certificates naming the gateway", "server_names", hosts)
	return current, hosts, nil
}
