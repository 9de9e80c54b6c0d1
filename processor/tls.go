package processor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// certReloader serves the certificate from cert and key files and reloads them when
// either file changes, checking at most once a second, so rotation needs no restart.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) latestModTime() (time.Time, error) {
	var latest time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return time.Time{}, err
		}
		if st.ModTime().After(latest) {
			latest = st.ModTime()
		}
	}
	return latest, nil
}

func (r *certReloader) reload() error {
	mod, err := r.latestModTime()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: cert %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.modTime = &cert, mod
	return nil
}

// GetCertificate keeps serving the previous certificate when a new pair does not load
// (a half-written rotation, say) and tries again on a later handshake.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= time.Second {
		r.checked = now
		if mod, err := r.latestModTime(); err == nil && !mod.Equal(r.modTime) {
			_ = r.reload()
		}
	}
	return r.cert, nil
}

// selfSignedCertificate makes an ephemeral certificate at start, for TLS without files:
// no key is baked into the binary or an image.
func selfSignedCertificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "wafplane-processor"},
		DNSNames:     []string{"localhost", "wafplane-processor"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// serverTLSConfig returns the TLS configuration, or nil when TLS is off.
func (c Config) serverTLSConfig() (*tls.Config, error) {
	if c.TLSConfig != nil {
		return c.TLSConfig, nil
	}
	if !c.TLS {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	if c.CertFile == "" {
		cert, err := selfSignedCertificate()
		if err != nil {
			return nil, fmt.Errorf("tls: self-signed certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		return cfg, nil
	}
	r, err := newCertReloader(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg.GetCertificate = r.GetCertificate
	return cfg, nil
}

// peerGateway checks a stream's client certificate when the processor runs with mTLS
// (Config.PeerGateway): it must name a gateway, and the one the stream's metadata names if
// any. It returns the gateway to use.
func (p *Processor) peerGateway(ctx context.Context, claimed string) (string, error) {
	pr, ok := peer.FromContext(ctx)
	var info credentials.TLSInfo
	if ok {
		info, ok = pr.AuthInfo.(credentials.TLSInfo)
	}
	if !ok || len(info.State.VerifiedChains) == 0 {
		return "", status.Error(codes.Unauthenticated, "ext_proc needs a client certificate of wafplane's CA")
	}
	g, ok := p.cfg.PeerGateway(info.State.VerifiedChains[0][0])
	if !ok {
		return "", status.Error(codes.PermissionDenied, "the client certificate names no gateway")
	}
	if claimed != "" && claimed != g {
		return "", status.Errorf(codes.PermissionDenied, "the client certificate is for gateway %q, the stream metadata says %q", g, claimed)
	}
	return g, nil
}
