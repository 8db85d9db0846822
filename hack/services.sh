#!/usr/bin/env bash
# Starts the servers the tests talk to, if they are not running. Fails loudly when it cannot.
set -euo pipefail

die() { echo "services: ERROR: $*" >&2; exit 1; }

postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  command -v pg_ctlcluster >/dev/null || die "Postgres is not installed (hack/tools.sh apt installs it)"
  local version; version="$(ls /etc/postgresql | sort -V | tail -1)"
  [ -n "$version" ] || die "no Postgres cluster under /etc/postgresql"
  echo "services: starting Postgres $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || die "cannot start Postgres"
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
  done
  pg_isready -q -h 127.0.0.1 -p 5432 || die "Postgres did not become ready on 127.0.0.1:5432"
  # The tests connect as postgres to the test database with trust auth on 127.0.0.1.
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 ||
    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null || die "cannot create database test"
}

postgres
