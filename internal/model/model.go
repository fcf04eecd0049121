// Package model loads segmentation models: an ONNX file plus the YAML manifest
// beside it that says which series the model applies to and how to feed it,
// read its output and describe its segments. It does not run models (package
// inference does), so the bridge can use it without ONNX Runtime.
package model

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/segbridge/segbridge/internal/dicomseg"
)

// maxManifestSize bounds what Load reads; manifests are a few kilobytes.
const maxManifestSize = 1 << 20

// Model is a validated manifest and where its files are.
type Model struct {
	Manifest
	// Path is the manifest's path; empty for a model made by Parse.
	Path string
	// ONNXPath is Manifest.File resolved against the manifest's folder.
	ONNXPath string
}

// Load reads, parses and validates the manifest at path. Errors start with
// the path and name the offending field.
func Load(path string) (*Model, error) {
	data, err := readManifest(path)
	if err != nil {
		return nil, err
	}
	m, err := Parse(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.Path = path
	return m, nil
}

func readManifest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open manifest: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, err)
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("%s: manifest is larger than %d bytes", path, maxManifestSize)
	}
	return data, nil
}

// LoadDir loads every *.yaml and *.yml file in dir (not its subfolders), in
// name order. Two manifests with the same model name are an error, as is any
// manifest that does not load; a folder without manifests gives no models.
func LoadDir(dir string) ([]*Model, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read model folder: %w", err)
	}
	var (
		models []*Model
		errs   []error
		byName = map[string]string{}
	)
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		m, err := Load(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := byName[m.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: name: %q is also the name of the model in %s", m.Path, m.Name, prev))
			continue
		}
		byName[m.Name] = m.Path
		models = append(models, m)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("load models from %s: %w", dir, errors.Join(errs...))
	}
	return models, nil
}

// Parse parses and validates a manifest; a relative file is resolved against
// dir, and the file must exist. Unknown keys are errors.
func Parse(data []byte, dir string) (*Model, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var man Manifest
	if err := dec.Decode(&man); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("manifest is empty")
		}
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	// A second document would be silently ignored, which hides mistakes.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse manifest: more than one YAML document")
	}
	man.setDefaults()
	if err := man.validate(); err != nil {
		return nil, err
	}

	m := &Model{Manifest: man, ONNXPath: man.File}
	if !filepath.IsAbs(m.ONNXPath) {
		m.ONNXPath = filepath.Join(dir, m.ONNXPath)
	}
	fi, err := os.Stat(m.ONNXPath)
	switch {
	case err != nil:
		return nil, fmt.Errorf("file: %w", err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("file: %s is not a regular file", m.ONNXPath)
	}
	return m, nil
}

// Applies reports whether the model should be run on a series of the given
// DICOM modality.
func (m *Model) Applies(modality string) bool {
	if len(m.AppliesTo.Modalities) == 0 {
		return true
	}
	return slices.ContainsFunc(m.AppliesTo.Modalities, func(s string) bool {
		return strings.EqualFold(s, strings.TrimSpace(modality))
	})
}

// Segments returns a copy of the manifest's segment descriptions, for the SEG
// writer.
func (m *Model) Segments() []dicomseg.Segment {
	return slices.Clone(m.Manifest.Segments)
}
