// Package snapshot translates the discovery model into Envoy resources per gateway, as a
// pure function: same model in, same resources out, no clock, no I/O. It must not import
// client-go or do network I/O.
//
// The translation arrives with the control-plane issue; this file fixes the package's place.
package snapshot
