// Package integration holds end-to-end tests of the built wafplane binary: it is started
// with a gateways file on free loopback ports, and the tests connect as Envoy nodes do
// (go-control-plane's SotW ADS client and a delta stream), ACK and NACK, edit the file,
// read the admin endpoint and send requests to the processor with the metadata the
// snapshot declares. It imports everything and is imported by nothing.
package integration
