// Package storage holds the integration tests of the production storage: the proxy on real
// MinIO and Postgres, their outages (a private Postgres the tests stop and restart, MinIO
// stopped and restarted) and eviction under a small budget while pulls run. The conformance
// suites of the stores themselves run in their own packages.
package storage
