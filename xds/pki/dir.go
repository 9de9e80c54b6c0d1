package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Files of a CA kept in a directory (outside Kubernetes).
const (
	BundleFile = "ca.crt"
	KeyFile    = "ca.key"
)

// LoadDir reads the CA kept in dir, making one there when there is none yet (create) and
// replacing it before it expires. The key file is readable by its owner only.
func LoadDir(dir string, create bool, now time.Time) (*CA, error) {
	bundle, err := os.ReadFile(filepath.Join(dir, BundleFile))
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("no CA in %s (wafplane serve makes one there on its first start)", dir)
		}
		ca, err := New(now)
		if err != nil {
			return nil, err
		}
		return ca, writeDir(dir, ca)
	}
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	ca, err := Parse(bundle, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	next, changed, err := ca.Rotated(now)
	if err != nil || !changed || !create {
		return next, err
	}
	return next, writeDir(dir, next)
}

func writeDir(dir string, ca *CA) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, KeyFile), key, 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, BundleFile), ca.BundlePEM(), 0o644)
}

// writeFile replaces a file at once, so that a reader never sees half of it.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// WriteClient writes a gateway's client certificate, key and the CA bundle into dir as
// tls.crt, tls.key and ca.crt, the names of a kubernetes.io/tls Secret.
func WriteClient(dir string, certPEM, keyPEM, bundlePEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "tls.crt"), certPEM, 0o644); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, BundleFile), bundlePEM, 0o644)
}
