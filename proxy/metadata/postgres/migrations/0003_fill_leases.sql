-- Fill leases of proxy replicas sharing this database (proxy/fillcoord). IF NOT EXISTS:
-- before this migration the coordinator created the table itself.
CREATE TABLE IF NOT EXISTS fill_leases (
	digest     text PRIMARY KEY,
	holder     text NOT NULL,
	addr       text NOT NULL,
	expires_at timestamptz NOT NULL
);
