// Package integration pulls images through an in-process hubcache proxy, in front of a fake
// Docker Hub (test/fakehub), with real clients: crane, skopeo, containerd's CRI PullImage and
// the OCI distribution-spec conformance suite. It also drives the proxy over raw HTTP for
// hostile input and byte ranges. docs/testing.md says what each test proves and needs.
package integration
