-- Last access in Unix microseconds (UTC); rows that exist already count as used now.
ALTER TABLE manifests ADD COLUMN last_access INTEGER NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN last_access INTEGER NOT NULL DEFAULT 0;
UPDATE manifests SET last_access = CAST(strftime('%s', 'now') AS INTEGER) * 1000000;
UPDATE blobs SET last_access = CAST(strftime('%s', 'now') AS INTEGER) * 1000000;
CREATE INDEX manifests_last_access ON manifests (last_access);
CREATE INDEX blobs_last_access ON blobs (last_access);

-- What each manifest references. child has no foreign key: it may not be cached (yet).
CREATE TABLE manifest_refs (
    manifest TEXT NOT NULL REFERENCES manifests (digest) ON DELETE CASCADE,
    child    TEXT NOT NULL,
    PRIMARY KEY (manifest, child)
) STRICT, WITHOUT ROWID;
CREATE INDEX manifest_refs_child ON manifest_refs (child);
