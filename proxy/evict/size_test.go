package evict_test

import (
	"testing"

	"github.com/hubcache/hubcache/proxy/evict"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{"a plain number is bytes", "1048576", 1 << 20, false},
		{"IEC units are powers of 1024", "10GiB", 10 << 30, false},
		{"the short IEC form works too", "512Mi", 512 << 20, false},
		{"SI units are powers of 1000", "500MB", 500e6, false},
		{"units are case-insensitive and may follow a space", "2 tib", 2 << 40, false},
		{"a fraction is rounded to a byte", "1.5KiB", 1536, false},
		{"zero is allowed", "0", 0, false},
		{"an unknown unit is refused", "10GB/s", 0, true},
		{"a negative size is refused", "-1GiB", 0, true},
		{"a unit without a number is refused", "GiB", 0, true},
		{"an empty string is refused", "", 0, true},
		{"an overflow is refused", "9000000TiB", 0, true},
		{"a huge fraction is refused", "99999999999999999999.5TiB", 0, true},
		{"two dots are refused", "1.2.3GiB", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := evict.ParseSize(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
