package xds

import (
	"context"
	"crypto/tls"

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
}

// Reasons a stream is refused, the label of wafplane_xds_rejected_streams_total.
const (
	RejectNoCertificate = "no_certificate"
	RejectNoIdentity    = "no_gateway_identity"
	RejectNodeMismatch  = "node_mismatch"
	// Refused with or without authentication:
	RejectOversizedNode = "oversized_node" // a node field beyond its bound (nodebounds.go)
	RejectSilent        = "no_request"     // no request within the first-request deadline
)

func (a *Auth) credentials() credentials.TransportCredentials {
	// A missing certificate is let through the handshake so that the stream can be
	// refused with a reason on /nodes and in the metrics; one that is there must verify.
	return credentials.NewTLS(pki.ServerTLS(a.CA, a.Hosts, tls.VerifyClientCertIfGiven))
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
