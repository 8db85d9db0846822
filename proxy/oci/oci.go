// Package oci is the vocabulary of the OCI distribution protocol as hubcache speaks it:
// request paths and their routes, repository names, digests, the error codes with the one
// error type and the one writer, the content types shared by every server, and the
// streaming copy. It does no I/O of its own beyond writing a response, so the proxy, the
// node entry point, the upstream client and the cache can all import it without importing
// each other.
package oci
