// Package file reads gateways from a YAML file, or the embedded default when no file is
// given, and watches the file. It takes in a path and gives out discovery.Update values; it
// must not import client-go or go-control-plane.
//
// The file holds a discovery.State: `gateways:` with each gateway's listeners, routes and
// protection (deploy/examples/gateways.yaml shows every field). Unknown fields are errors,
// so that a typo is not silently ignored.
package file
