//go:build !linux

package file

import (
	"io/fs"
	"time"
)

// version is unknown off Linux: every whole read is hashed.
func version(fs.FileInfo) (string, time.Time) { return "", time.Time{} }
