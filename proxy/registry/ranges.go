package registry

import (
	"errors"
	"strconv"
	"strings"
)

// errUnsatisfiable means the Range header names no byte of the blob: 416.
var errUnsatisfiable = errors.New("range not satisfiable")

// byteRange is one satisfiable range: length bytes from offset.
type byteRange struct {
	offset, length int64
}

// parseRange reads a Range header against a blob of size bytes. It returns ok=false when the
// whole blob should be sent: no header, a header it does not understand (RFC 9110 lets a
// server ignore those), or several ranges (multipart answers are not worth their complexity
// for layer downloads; clients resume with one range). errUnsatisfiable asks for a 416.
func parseRange(header string, size int64) (byteRange, bool, error) {
	if header == "" || size < 0 {
		return byteRange{}, false, nil
	}
	spec, found := strings.CutPrefix(header, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return byteRange{}, false, nil
	}
	startStr, endStr, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return byteRange{}, false, nil
	}
	if startStr == "" {
		// Suffix range: the last n bytes.
		n, err := strconv.ParseInt(endStr, 10, 64)
		if err != nil || n < 0 {
			return byteRange{}, false, nil
		}
		if n == 0 || size == 0 {
			return byteRange{}, false, errUnsatisfiable
		}
		n = min(n, size)
		return byteRange{offset: size - n, length: n}, true, nil
	}
	start, err := strconv.ParseInt(startStr, 10, 64)
	if err != nil || start < 0 {
		return byteRange{}, false, nil
	}
	end := size - 1
	if endStr != "" {
		end, err = strconv.ParseInt(endStr, 10, 64)
		if err != nil || end < start {
			return byteRange{}, false, nil
		}
		end = min(end, size-1)
	}
	if start >= size {
		return byteRange{}, false, errUnsatisfiable
	}
	return byteRange{offset: start, length: end - start + 1}, true, nil
}
