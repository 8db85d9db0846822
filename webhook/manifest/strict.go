package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	yamlv3 "go.yaml.in/yaml/v3"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// checkDuplicateKeys finds a mapping with the same key twice in any YAML document of data.
// The stream decoder converts YAML to JSON through a map, where the last duplicate silently
// wins, so the check reads the YAML itself. A document YAML cannot parse (a stream of JSON
// values with no "---" between them) is left to the decoder, which reports syntax errors and
// keeps JSON duplicates for the JSON check.
func checkDuplicateKeys(data []byte) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // the decoder reports it
		}
		var root yamlv3.Node
		if err := yamlv3.Unmarshal(doc, &root); err != nil {
			continue
		}
		if err := duplicateIn(&root); err != nil {
			return fmt.Errorf("document %d: %w", n, err)
		}
	}
}

// duplicateIn walks a YAML node tree and reports the first mapping key seen twice.
func duplicateIn(n *yamlv3.Node) error {
	if n.Kind == yamlv3.MappingNode {
		seen := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yamlv3.ScalarNode || k.Value == "<<" {
				continue // merge keys may repeat
			}
			if line, ok := seen[k.Value]; ok {
				return fmt.Errorf("%w %q on line %d (first on line %d)", ErrDuplicateKey, k.Value, k.Line, line)
			}
			seen[k.Value] = k.Line
		}
	}
	for _, c := range n.Content {
		if err := duplicateIn(c); err != nil {
			return err
		}
	}
	return nil
}
