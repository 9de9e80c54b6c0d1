package file

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// The JSON decoder behind the strict YAML parse speaks of JSON and Go types and gives no
// position. explain says the same in the file's words: where (path, line, column) and what
// is expected there.
var (
	unknownField = regexp.MustCompile(`json: unknown field "([^"]+)"`)
	wrongType    = regexp.MustCompile(`json: cannot unmarshal (.+?) into Go struct field \w+\.([\w.]+) of type ([\w\[\].*]+)`)
)

func explain(raw []byte, err error) error {
	msg := err.Error()
	var root yamlv3.Node
	if yamlv3.Unmarshal(raw, &root) != nil {
		return errors.New(strings.TrimPrefix(msg, "error converting YAML to JSON: "))
	}
	if m := unknownField.FindStringSubmatch(msg); m != nil {
		if path, n := findKey(&root, m[1], ""); n != nil {
			return fmt.Errorf("%s (line %d, column %d): unknown field %q", path, n.Line, n.Column, m[1])
		}
		return fmt.Errorf("unknown field %q", m[1])
	}
	if m := wrongType.FindStringSubmatch(msg); m != nil {
		want, got := expected(m[3]), m[1]
		if path, n := findValue(&root, strings.Split(m[2], "."), "", want); n != nil {
			return fmt.Errorf("%s (line %d, column %d): %s, want %s", path, n.Line, n.Column, describe(n, got), want)
		}
		return fmt.Errorf("%s: want %s", m[2], want)
	}
	return errors.New(strings.TrimPrefix(strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: "), "error converting YAML to JSON: "))
}

// expected names a Go type in the words of a YAML file.
func expected(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "text"
	case goType == "time.Duration" || strings.HasSuffix(goType, ".Duration"):
		return `a duration such as "200ms" or "5s"`
	case strings.HasPrefix(goType, "uint"):
		return "a whole number, 0 or more"
	case strings.HasPrefix(goType, "int"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	default:
		return "a mapping (key: value)"
	}
}

// describe says what the file holds where something else was expected.
func describe(n *yamlv3.Node, jsonKind string) string {
	switch n.Kind {
	case yamlv3.MappingNode:
		return "a mapping"
	case yamlv3.SequenceNode:
		return "a list"
	}
	if strings.HasPrefix(jsonKind, `"`) { // a value the type itself refused, quoted
		return strconv.Quote(n.Value) + " is not valid"
	}
	return strconv.Quote(n.Value)
}

// findKey finds the first mapping key named name, depth first, and its path.
func findKey(n *yamlv3.Node, name, path string) (string, *yamlv3.Node) {
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			if p, k := findKey(c, name, path); k != nil {
				return p, k
			}
		}
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i]
			if key.Value == name {
				return join(path, name), key
			}
			if p, k := findKey(n.Content[i+1], name, join(path, key.Value)); k != nil {
				return p, k
			}
		}
	case yamlv3.SequenceNode:
		for i, c := range n.Content {
			if p, k := findKey(c, name, fmt.Sprintf("%s[%d]", path, i)); k != nil {
				return p, k
			}
		}
	}
	return "", nil
}

// findValue follows keys through mappings and every element of lists to the first value
// that is not of the kind want names.
func findValue(n *yamlv3.Node, keys []string, path, want string) (string, *yamlv3.Node) {
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			if p, v := findValue(c, keys, path, want); v != nil {
				return p, v
			}
		}
		return "", nil
	case yamlv3.SequenceNode:
		if len(keys) > 0 {
			for i, c := range n.Content {
				if p, v := findValue(c, keys, fmt.Sprintf("%s[%d]", path, i), want); v != nil {
					return p, v
				}
			}
			return "", nil
		}
	}
	if len(keys) == 0 {
		if mismatched(n, want) {
			return path, n
		}
		return "", nil
	}
	if n.Kind != yamlv3.MappingNode {
		return "", nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == keys[0] {
			return findValue(n.Content[i+1], keys[1:], join(path, keys[0]), want)
		}
	}
	return "", nil
}

func mismatched(n *yamlv3.Node, want string) bool {
	switch want {
	case "a list":
		return n.Kind != yamlv3.SequenceNode
	case "a mapping (key: value)":
		return n.Kind != yamlv3.MappingNode
	}
	if n.Kind != yamlv3.ScalarNode {
		return true
	}
	switch want {
	case "true or false":
		return n.Tag != "!!bool"
	case "a whole number", "a whole number, 0 or more":
		return n.Tag != "!!int"
	case "a number":
		return n.Tag != "!!int" && n.Tag != "!!float"
	}
	return true // text, a duration: the scalar is there but was refused
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
