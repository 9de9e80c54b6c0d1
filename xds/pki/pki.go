// Package pki is wafplane's small certificate authority: it signs the xDS server's
// certificate and one client certificate per gateway, whose SPIFFE URI names the gateway
// (spiffe://wafplane/ns/<namespace>/gateway/<name>), so that the xDS server serves a stream
// only the snapshot of the gateway its certificate names.
//
// It takes in PEM (or makes a new CA) and gives out PEM and tls/x509 values; it imports only
// the standard library, so the Kubernetes code that stores the CA can use it too.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// Validity of what the CA signs; a CA is replaced when less than RotateBefore is left.
const (
	CAValidity     = 5 * 365 * 24 * time.Hour
	RotateBefore   = 365 * 24 * time.Hour
	ClientValidity = 90 * 24 * time.Hour
	ServerValidity = 90 * 24 * time.Hour
	// RenewBefore: a leaf certificate with less left than this is issued again.
	RenewBefore = 30 * 24 * time.Hour
)

const trustDomain = "wafplane"

// GatewayURI is the identity of a gateway's Envoys: spiffe://wafplane/ns/<ns>/gateway/<name>.
func GatewayURI(gateway string) (*url.URL, error) {
	ns, name, ok := strings.Cut(gateway, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("gateway %q: want namespace/name", gateway)
	}
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/ns/" + ns + "/gateway/" + name}, nil
}

// GatewayOf reads the gateway ("namespace/name") a client certificate names.
func GatewayOf(cert *x509.Certificate) (string, bool) {
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" || u.Host != trustDomain {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(parts) == 4 && parts[0] == "ns" && parts[2] == "gateway" && parts[1] != "" && parts[3] != "" {
			return parts[1] + "/" + parts[3], true
		}
	}
	return "", false
}

// CA signs certificates. Bundle is what peers trust: the current CA first, then an older
// one still valid while certificates it signed are replaced.
type CA struct {
	Cert   *x509.Certificate
	key    crypto.Signer
	Bundle []*x509.Certificate
}

// New makes a CA valid from now.
func New(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"wafplane"}, CommonName: "wafplane xDS CA " + now.UTC().Format("2006-01-02")},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key, Bundle: []*x509.Certificate{cert}}, nil
}

// Parse reads a CA: the bundle (current CA first) and the current CA's key.
func Parse(bundlePEM, keyPEM []byte) (*CA, error) {
	bundle, err := ParseCertificates(bundlePEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if len(bundle) == 0 {
		return nil, errors.New("CA certificate: no certificate in the PEM")
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("CA key: no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !publicKeysEqual(signer.Public(), bundle[0].PublicKey) {
		return nil, errors.New("CA key: does not match the first certificate of the bundle")
	}
	if !bundle[0].IsCA {
		return nil, errors.New("CA certificate: not a CA")
	}
	return &CA{Cert: bundle[0], key: signer, Bundle: bundle}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// ParseCertificates reads every CERTIFICATE block of a PEM bundle.
func ParseCertificates(p []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, p = pem.Decode(p)
		if block == nil {
			return out, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

// Rotated returns the CA to use from now on: this one, or when it has less than
// RotateBefore left, a new one whose bundle keeps this one while it is valid. The bool says
// whether it changed (and must be stored).
func (c *CA) Rotated(now time.Time) (*CA, bool, error) {
	if c.Cert.NotAfter.Sub(now) > RotateBefore {
		return c, false, nil
	}
	next, err := New(now)
	if err != nil {
		return nil, false, err
	}
	for _, old := range c.Bundle {
		if old.NotAfter.After(now) {
			next.Bundle = append(next.Bundle, old)
		}
	}
	return next, true, nil
}

// BundlePEM is the bundle as PEM (ca.crt).
func (c *CA) BundlePEM() []byte {
	var out []byte
	for _, cert := range c.Bundle {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	}
	return out
}

// KeyPEM is the current CA's private key as PKCS#8 PEM (ca.key).
func (c *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Pool is what a peer of the CA trusts.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, cert := range c.Bundle {
		p.AddCert(cert)
	}
	return p
}

// Fingerprint names the current CA (a SHA-256 of its certificate, short): certificates
// issued under another one are issued again.
func (c *CA) Fingerprint() string {
	sum := sha256.Sum256(c.Cert.Raw)
	return hex.EncodeToString(sum[:8])
}

// IssueGateway signs a client certificate for a gateway's Envoys; it returns PEM.
func (c *CA) IssueGateway(gateway string, now time.Time) (certPEM, keyPEM []byte, err error) {
	u, err := GatewayURI(gateway)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"wafplane"}, CommonName: gateway},
		URIs:        []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return c.issue(tmpl, now, ClientValidity)
}

// IssueServer signs the xDS server's certificate for its host names and addresses.
func (c *CA) IssueServer(hosts []string, now time.Time) (tls.Certificate, error) {
	return c.IssueServerFor("wafplane xDS", hosts, now, ServerValidity)
}

// IssueServerFor signs a server certificate valid for validity (at most the CA's own).
func (c *CA) IssueServerFor(name string, hosts []string, now time.Time, validity time.Duration) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"wafplane"}, CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	certPEM, keyPEM, err := c.issue(tmpl, now, validity)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func (c *CA) issue(tmpl *x509.Certificate, now time.Time, validity time.Duration) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour) // clocks of other machines lag
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(c.Cert.NotAfter) {
		tmpl.NotAfter = c.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, key.Public(), c.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// NeedsRenewal says whether a leaf certificate (PEM) should be issued again: it does not
// parse, it was not signed by the current CA, or less than RenewBefore is left.
func (c *CA) NeedsRenewal(certPEM []byte, now time.Time) bool {
	certs, err := ParseCertificates(certPEM)
	if err != nil || len(certs) == 0 {
		return true
	}
	if certs[0].CheckSignatureFrom(c.Cert) != nil {
		return true
	}
	return certs[0].NotAfter.Sub(now) < RenewBefore
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
