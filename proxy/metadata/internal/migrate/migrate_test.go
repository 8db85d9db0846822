package migrate

import (
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    []int
		wantErr bool
	}{
		{"files are ordered by version", fstest.MapFS{
			"m/0002_b.sql": {Data: []byte("B")},
			"m/0001_a.sql": {Data: []byte("A")},
			"m/README":     {Data: []byte("ignored")},
		}, []int{1, 2}, false},
		{"a gap in the versions is an error", fstest.MapFS{
			"m/0001_a.sql": {Data: []byte("A")},
			"m/0003_c.sql": {Data: []byte("C")},
		}, nil, true},
		{"a duplicate version is an error", fstest.MapFS{
			"m/0001_a.sql": {Data: []byte("A")},
			"m/0001_b.sql": {Data: []byte("B")},
		}, nil, true},
		{"a name without a version is an error", fstest.MapFS{
			"m/init.sql": {Data: []byte("A")},
		}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := Load(tc.files, "m")
			if (err != nil) != tc.wantErr {
				t.Fatalf("Load error = %v, wantErr %v", err, tc.wantErr)
			}
			if len(ms) != len(tc.want) {
				t.Fatalf("got %d migrations, want %d", len(ms), len(tc.want))
			}
			for i, m := range ms {
				if m.Version != tc.want[i] {
					t.Errorf("migration %d has version %d, want %d", i, m.Version, tc.want[i])
				}
			}
		})
	}
}
