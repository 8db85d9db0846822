package manifest

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Stdin is the path that means standard input.
const Stdin = "-"

// Read returns the workloads in path: a file, a folder (searched recursively for *.yaml,
// *.yml and *.json, in lexical order), or Stdin read from stdin. Errors start with the file
// name and the document number.
func Read(path string, stdin io.Reader) ([]Workload, error) {
	if path == Stdin {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return decodeNamed("<stdin>", data)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err // already names the path
	}
	if !info.IsDir() {
		return readFile(path)
	}
	var out []Workload
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isManifest(p) {
			return nil
		}
		ws, err := readFile(p)
		if err != nil {
			return err
		}
		out = append(out, ws...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func isManifest(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func readFile(p string) ([]Workload, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return decodeNamed(p, data)
}

func decodeNamed(name string, data []byte) ([]Workload, error) {
	ws, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ws, nil
}
