package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"
)

// ServerTLS is a TLS configuration whose certificate is issued by the current CA for
// hosts — again when the CA rotates or the certificate nears its end — and which checks
// client certificates against the CA with clientAuth. gRPC's credentials.NewTLS takes it.
func ServerTLS(ca func() *CA, hosts []string, clientAuth tls.ClientAuthType) *tls.Config {
	var mu sync.Mutex
	var cert *tls.Certificate
	var certFor string
	current := func(c *CA) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if cert != nil && certFor == c.Fingerprint() && cert.Leaf.NotAfter.Sub(now) > RenewBefore {
			return cert, nil
		}
		next, err := c.IssueServer(hosts, now)
		if err != nil {
			return nil, fmt.Errorf("server certificate: %w", err)
		}
		if next.Leaf == nil {
			if next.Leaf, err = x509.ParseCertificate(next.Certificate[0]); err != nil {
				return nil, err
			}
		}
		cert, certFor = &next, c.Fingerprint()
		return cert, nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := ca()
			crt, err := current(c)
			if err != nil {
				return nil, err
			}
			return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*crt},
				ClientAuth: clientAuth, ClientCAs: c.Pool(), NextProtos: []string{"h2"}}, nil
		},
	}
}
