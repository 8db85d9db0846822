-- Objects are recorded once per digest; links say which repositories may see them.
CREATE TABLE manifests (
    digest     text PRIMARY KEY,
    media_type text NOT NULL,
    size       bigint NOT NULL CHECK (size >= 0)
);

CREATE TABLE manifest_links (
    repository text NOT NULL,
    digest     text NOT NULL REFERENCES manifests (digest) ON DELETE CASCADE,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX manifest_links_digest ON manifest_links (digest);

CREATE TABLE blobs (
    digest text PRIMARY KEY,
    size   bigint NOT NULL CHECK (size >= 0)
);

CREATE TABLE blob_links (
    repository text NOT NULL,
    digest     text NOT NULL REFERENCES blobs (digest) ON DELETE CASCADE,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX blob_links_digest ON blob_links (digest);

CREATE TABLE tags (
    repository text NOT NULL,
    tag        text NOT NULL,
    digest     text NOT NULL,
    checked_at timestamptz NOT NULL,
    PRIMARY KEY (repository, tag)
);
CREATE INDEX tags_digest ON tags (digest);
