package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
)

// Bounds of what a node may say about itself. go-control-plane keeps every stream's node
// (and the requests that carry it) for the stream's life, and /nodes serves what the
// registry keeps, so a client that sends a huge node must be refused before it is kept.
// Real Envoys stay far below: ids are host or pod names, the cluster is wafplane's
// "namespace/name", and the whole node with Envoy's list of extensions is some tens of KiB.
const (
	maxNodeID        = 1 << 10
	maxNodeCluster   = 63 + 1 + 253 // a Kubernetes namespace, "/", an object name
	maxNodeMetadata  = 64 << 10     // encoded size
	maxNodeUserAgent = 256
	maxNodeSize      = 512 << 10 // encoded size of the whole node
)

// nodeTooLarge says which part of a node is out of bounds, or returns nil.
func nodeTooLarge(n *corev3.Node) error {
	check := func(what string, size, limit int) error {
		if size > limit {
			return fmt.Errorf("node %s is %d bytes, at most %d are accepted", what, size, limit)
		}
		return nil
	}
	if err := check("id", len(n.GetId()), maxNodeID); err != nil {
		return err
	}
	if err := check("cluster", len(n.GetCluster()), maxNodeCluster); err != nil {
		return err
	}
	if err := check("user_agent_name", len(n.GetUserAgentName()), maxNodeUserAgent); err != nil {
		return err
	}
	if err := check("user_agent_version", len(n.GetUserAgentVersion()), maxNodeUserAgent); err != nil {
		return err
	}
	if err := check("metadata", proto.Size(n.GetMetadata()), maxNodeMetadata); err != nil {
		return err
	}
	if size := proto.Size(n); size > maxNodeSize {
		return fmt.Errorf("node is %d bytes, at most %d are accepted", size, maxNodeSize)
	}
	return nil
}

// userAgent is "envoy 1.36.2", from the node's user agent fields, within bounds.
func userAgent(n *corev3.Node) string {
	name, version := n.GetUserAgentName(), n.GetUserAgentVersion()
	if v := n.GetUserAgentBuildVersion().GetVersion(); version == "" && v != nil {
		version = fmt.Sprintf("%d.%d.%d", v.GetMajorNumber(), v.GetMinorNumber(), v.GetPatch())
	}
	if version == "" {
		return clip(name, maxNodeUserAgent)
	}
	return clip(name+" "+version, maxNodeUserAgent)
}

// clip cuts s to at most limit bytes, marking the cut.
func clip(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
