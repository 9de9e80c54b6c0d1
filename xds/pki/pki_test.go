package pki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGatewayIdentity(t *testing.T) {
	now := time.Now()
	ca, err := New(now)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueGateway("shop/edge", now)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate does not verify: %v", err)
	}
	if g, ok := GatewayOf(leaf); !ok || g != "shop/edge" {
		t.Fatalf("GatewayOf = %q %v", g, ok)
	}
	for _, bad := range []string{"edge", "shop/", "/edge", "a/b/c"} {
		if _, _, err := ca.IssueGateway(bad, now); err == nil {
			t.Errorf("IssueGateway(%q) accepted", bad)
		}
	}
	if ca.NeedsRenewal(certPEM, now) || !ca.NeedsRenewal(certPEM, now.Add(ClientValidity-RenewBefore+time.Hour)) {
		t.Error("renewal window wrong")
	}
	other, _ := New(now)
	if !other.NeedsRenewal(certPEM, now) {
		t.Error("a certificate of another CA must be issued again")
	}
}

func TestParseRoundTripAndRotation(t *testing.T) {
	now := time.Now()
	ca, _ := New(now)
	key, _ := ca.KeyPEM()
	back, err := Parse(ca.BundlePEM(), key)
	if err != nil || back.Fingerprint() != ca.Fingerprint() {
		t.Fatalf("round trip: %v", err)
	}
	other, _ := New(now)
	otherKey, _ := other.KeyPEM()
	if _, err := Parse(ca.BundlePEM(), otherKey); err == nil {
		t.Error("a key of another CA was accepted")
	}
	if _, changed, _ := ca.Rotated(now); changed {
		t.Error("a new CA rotated")
	}
	later := now.Add(CAValidity - RotateBefore + time.Hour)
	next, changed, err := ca.Rotated(later)
	if err != nil || !changed || next.Fingerprint() == ca.Fingerprint() {
		t.Fatalf("rotation: %v %v", changed, err)
	}
	// Certificates of the old CA verify against the new bundle until they are replaced.
	certPEM, _, _ := ca.IssueGateway("shop/edge", later)
	leaf, _ := ParseCertificates(certPEM)
	if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: next.Pool(), CurrentTime: later, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("old client certificate after rotation: %v", err)
	}
	if !next.NeedsRenewal(certPEM, later) {
		t.Error("a certificate of the old CA must be issued again")
	}
}

func TestLoadDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := LoadDir(dir, false, time.Now()); err == nil {
		t.Fatal("LoadDir without create made a CA")
	}
	ca, err := LoadDir(dir, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode(), err)
	}
	again, err := LoadDir(dir, false, time.Now())
	if err != nil || again.Fingerprint() != ca.Fingerprint() {
		t.Fatalf("reload: %v", err)
	}
}
