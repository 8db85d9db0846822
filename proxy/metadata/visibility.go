package metadata

import (
	"fmt"
	"time"
)

// Visibility is what anonymous Docker Hub answered for a repository.
type Visibility string

// The two answers a store keeps. "Unknown" is never stored: it is the absence of a row.
const (
	// Public: an anonymous client may pull the repository.
	Public Visibility = "public"
	// Private: the repository exists only for some credentials (or not at all), so anonymous
	// Docker Hub refuses it.
	Private Visibility = "private"
)

// RepositoryVisibility is the last definite answer about a repository.
type RepositoryVisibility struct {
	Visibility Visibility
	// CheckedAt is when upstream gave this answer.
	CheckedAt time.Time
}

// CheckVisibility reports whether a visibility record can be stored.
func CheckVisibility(repo string, v RepositoryVisibility) error {
	if err := checkNames(repo, "-"); err != nil {
		return err
	}
	if v.Visibility != Public && v.Visibility != Private {
		return fmt.Errorf("%w: visibility %q", ErrInvalid, v.Visibility)
	}
	if v.CheckedAt.IsZero() {
		return fmt.Errorf("%w: zero check time", ErrInvalid)
	}
	return nil
}
