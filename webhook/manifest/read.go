package manifest

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Stdin is the path that means standard input.
const Stdin = "-"

// Read returns the workloads in path: a file, a folder (searched recursively for *.yaml,
// *.yml and *.json, in lexical order), or Stdin read from stdin, plus warnings about objects
// that carry images hubcache does not read. Errors and warnings start with the file name and
// the document number.
func Read(path string, stdin io.Reader) ([]Workload, []string, error) {
	if path == Stdin {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, nil, fmt.Errorf("reading standard input: %w", err)
		}
		return decodeNamed("<stdin>", data)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, nil, err // already names the path
	}
	if !info.IsDir() {
		return readFile(path)
	}
	var (
		out      []Workload
		warnings []string
	)
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isManifest(p) {
			return nil
		}
		ws, wn, err := readFile(p)
		if err != nil {
			return err
		}
		out = append(out, ws...)
		warnings = append(warnings, wn...)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, warnings, nil
}

// ReadKustomization builds the kustomization in dir as `kubectl diff -k DIR` does (kustomize
// with its default options: files only from inside dir) and reads the result.
func ReadKustomization(dir string) ([]Workload, []string, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	data, err := res.AsYaml()
	if err != nil {
		return nil, nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return decodeNamed("kustomize build "+dir, data)
}

func isManifest(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func readFile(p string) ([]Workload, []string, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, err
	}
	return decodeNamed(p, data)
}

func decodeNamed(name string, data []byte) ([]Workload, []string, error) {
	ws, warnings, err := Decode(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	for i, w := range warnings {
		warnings[i] = name + ": " + w
	}
	return ws, warnings, nil
}
