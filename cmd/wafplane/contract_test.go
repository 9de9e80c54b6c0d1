package main

import (
	"testing"

	"github.com/wafplane/wafplane/processor"
	"github.com/wafplane/wafplane/snapshot"
)

// The snapshot writes the metadata keys the processor reads; they are two lists because
// snapshot must not import the processor (and its cgo WAF). They must stay equal.
func TestMetadataContract(t *testing.T) {
	pairs := [][2]string{
		{snapshot.MetadataGateway, processor.MetadataGateway},
		{snapshot.MetadataRoute, processor.MetadataRoute},
		{snapshot.MetadataMode, processor.MetadataMode},
		{snapshot.MetadataBodyLimit, processor.MetadataBodyLimit},
		{snapshot.MetadataResponseBody, processor.MetadataResponseBody},
	}
	for _, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("snapshot writes %q, processor reads %q", p[0], p[1])
		}
	}
}
