package discovery

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHostnameIntersection(t *testing.T) {
	cases := []struct {
		listener string
		route    []string
		want     []string
	}{
		{"", nil, []string{"*"}},
		{"*.example.com", nil, []string{"*.example.com"}},
		{"*.example.com", []string{"a.example.com", "example.com", "b.other.org"}, []string{"a.example.com"}},
		{"a.example.com", []string{"*.example.com"}, []string{"a.example.com"}},
		{"a.example.com", []string{"*.other.org"}, nil},
		{"", []string{"x.io", "x.io"}, []string{"x.io"}},
	}
	for _, c := range cases {
		if diff := cmp.Diff(c.want, IntersectHostnames(c.listener, c.route)); diff != "" {
			t.Errorf("intersect(%q, %v) (-want +got):\n%s", c.listener, c.route, diff)
		}
	}
}
