package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/wafplane/wafplane/xds/pki"
)

// Auth makes the xDS server speak TLS and serve a stream only the snapshot of the gateway
// its client certificate names (pki.GatewayURI). Without Auth the server is plaintext and
// believes the node's cluster: for loopback and labs only.
type Auth struct {
	// CA returns the current CA; it is asked at every handshake, so a rotated CA is used
	// at once.
	CA func() *pki.CA
	// Hosts are the names and addresses Envoys dial, written into the server certificate.
	Hosts []string

	mu      sync.Mutex
	cert    *tls.Certificate
	certFor string // CA fingerprint the server certificate was issued under
}

// Reasons a stream is refused, the label of wafplane_xds_rejected_streams_total.
const (
	RejectNoCertificate = "no_certificate"
	RejectNoIdentity    = "no_gateway_identity"
	RejectNodeMismatch  = "node_mismatch"
)

func (a *Auth) credentials() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			ca := a.CA()
			cert, err := a.serverCert(ca)
			if err != nil {
				return nil, err
			}
			// A missing certificate is let through the handshake so that the stream can
			// be refused with a reason on /nodes and in the metrics; a certificate that
			// is there must verify.
			return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert},
				ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool(), NextProtos: []string{"h2"}}, nil
		},
	})
}

// serverCert is issued under the current CA and issued again before it expires.
func (a *Auth) serverCert(ca *pki.CA) (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if a.cert != nil && a.certFor == ca.Fingerprint() && a.cert.Leaf.NotAfter.Sub(now) > pki.RenewBefore {
		return a.cert, nil
	}
	cert, err := ca.IssueServer(a.Hosts, now)
	if err != nil {
		return nil, fmt.Errorf("xDS server certificate: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	a.cert, a.certFor = &cert, ca.Fingerprint()
	return a.cert, nil
}

// identity is the gateway a stream's verified client certificate names, or why there is
// none.
func identity(ctx context.Context) (gateway, reject string) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", RejectNoCertificate
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", RejectNoCertificate
	}
	g, ok := pki.GatewayOf(info.State.VerifiedChains[0][0])
	if !ok {
		return "", RejectNoIdentity
	}
	return g, ""
}
