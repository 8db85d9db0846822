-- Rows that exist already count as used now.
ALTER TABLE manifests ADD COLUMN last_access timestamptz NOT NULL DEFAULT now();
ALTER TABLE blobs ADD COLUMN last_access timestamptz NOT NULL DEFAULT now();
CREATE INDEX manifests_last_access ON manifests (last_access);
CREATE INDEX blobs_last_access ON blobs (last_access);

-- What each manifest references. child has no foreign key: it may not be cached (yet).
CREATE TABLE manifest_refs (
    manifest text NOT NULL REFERENCES manifests (digest) ON DELETE CASCADE,
    child    text NOT NULL,
    PRIMARY KEY (manifest, child)
);
CREATE INDEX manifest_refs_child ON manifest_refs (child);
