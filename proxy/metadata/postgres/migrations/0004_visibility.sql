-- Whether anonymous Docker Hub serves a repository, as last checked. Only definite answers
-- are stored ('public' or 'private'); an upstream that could not be asked leaves the previous
-- row as it was.
CREATE TABLE repository_visibility (
    repository text PRIMARY KEY,
    visibility text NOT NULL CHECK (visibility IN ('public', 'private')),
    checked_at timestamptz NOT NULL
);
