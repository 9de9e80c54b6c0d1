package kubetest

import (
	"crypto/tls"

	"k8s.io/client-go/rest"
)

func mustTLS(*rest.Config) *tls.Config {
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a throw-away test apiserver on loopback
}
