-- Objects are recorded once per digest; links say which repositories may see them.
CREATE TABLE manifests (
    digest     TEXT PRIMARY KEY,
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0)
) STRICT, WITHOUT ROWID;

CREATE TABLE manifest_links (
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL REFERENCES manifests (digest) ON DELETE CASCADE,
    PRIMARY KEY (repository, digest)
) STRICT, WITHOUT ROWID;
CREATE INDEX manifest_links_digest ON manifest_links (digest);

CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size   INTEGER NOT NULL CHECK (size >= 0)
) STRICT, WITHOUT ROWID;

CREATE TABLE blob_links (
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL REFERENCES blobs (digest) ON DELETE CASCADE,
    PRIMARY KEY (repository, digest)
) STRICT, WITHOUT ROWID;
CREATE INDEX blob_links_digest ON blob_links (digest);

-- checked_at is Unix time in microseconds (UTC), the precision Postgres keeps too.
CREATE TABLE tags (
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    checked_at INTEGER NOT NULL,
    PRIMARY KEY (repository, tag)
) STRICT, WITHOUT ROWID;
CREATE INDEX tags_digest ON tags (digest);
