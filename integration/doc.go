// Package integration holds end-to-end tests of the built wafplane binary against real
// servers. It has no code of its own besides its tests.
package integration
