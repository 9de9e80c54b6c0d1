package kubernetes

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wafplane/wafplane/xds/pki"
)

// trustGrace is how long the API server's copy of the webhook configuration must have
// trusted a new CA before certificates it issued are served: the API server reads the
// configuration through its own informer, a moment after wafplane wrote it.
const trustGrace = 10 * time.Second

// selfCerts serves a certificate issued by wafplane's CA (the xDS CA Secret). It is
// issued again when a third of its validity is left, and from a rotated CA only once the
// webhook configuration has carried that CA for trustGrace: until then the certificate of
// the previous CA is served, so that no admission request meets a certificate the API
// server does not trust yet.
type selfCerts struct {
	ca       func() *pki.CA
	hosts    []string
	validity time.Duration
	trusted  func(fingerprint string) (since time.Time, ok bool)
	now      func() time.Time
	issued   func() // counts certificates issued; may be nil

	mu     sync.Mutex
	cert   *tls.Certificate
	issuer string // fingerprint of the CA that signed cert
}

func (s *selfCerts) get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	ca := s.ca()
	current := certFingerprint(ca.Cert.Raw)
	since, ok := s.trusted(current)
	caTrusted := ok && now.Sub(since) >= trustGrace
	if s.cert != nil {
		left := s.cert.Leaf.NotAfter.Sub(now)
		switch {
		case s.issuer == current && left > s.validity/3:
			return s.cert, nil
		case s.issuer != current && !caTrusted && left > 0:
			return s.cert, nil // the new CA is not trusted yet: keep the old one's certificate
		}
	}
	cert, err := ca.IssueServerFor("wafplane webhook", s.hosts, now, s.validity)
	if err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	s.cert, s.issuer = &cert, current
	if s.issued != nil {
		s.issued()
	}
	return s.cert, nil
}

func (s *selfCerts) bundle() ([]byte, error) { return s.ca().BundlePEM(), nil }

// dirCerts serves a user's certificate from a directory (tls.crt, tls.key, and ca.crt for
// the webhook configuration, as cert-manager writes them), read again when the files
// change, checked at most once a second.
type dirCerts struct {
	dir string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

func (d *dirCerts) get() (*tls.Certificate, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cert != nil && time.Since(d.checked) < time.Second {
		return d.cert, nil
	}
	d.checked = time.Now()
	crt, key := filepath.Join(d.dir, "tls.crt"), filepath.Join(d.dir, "tls.key")
	stamp := ""
	for _, f := range []string{crt, key} {
		fi, err := os.Stat(f)
		if err != nil {
			if d.cert != nil {
				return d.cert, nil // mid-update; the next check reads the new pair
			}
			return nil, fmt.Errorf("webhook certificate: %w", err)
		}
		stamp += fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
	}
	if d.cert != nil && stamp == d.stamp {
		return d.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		if d.cert != nil {
			return d.cert, nil
		}
		return nil, fmt.Errorf("webhook certificate in %s: %w", d.dir, err)
	}
	d.cert, d.stamp = &cert, stamp
	return d.cert, nil
}

func (d *dirCerts) bundle() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(d.dir, "ca.crt"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // a publicly trusted certificate: the API server's roots verify it
	}
	return b, err
}
