-- Whether anonymous Docker Hub serves a repository, as last checked. checked_at is Unix
-- microseconds (UTC). Only definite answers are stored ('public' or 'private'); an upstream
-- that could not be asked leaves the previous row as it was.
CREATE TABLE repository_visibility (
    repository TEXT PRIMARY KEY,
    visibility TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    checked_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
