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
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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

// Option changes how manifests are loaded.
type Option func(*options)

type options struct {
	fileDirs []string
}

// WithFileDirs adds folders in which a manifest's relative file (and
// colormap) is looked for when it is not beside the manifest, in order: the
// way a manifest committed in one place finds a model file kept in another
// (SEGBRIDGE_MODEL_FILES).
func WithFileDirs(dirs ...string) Option {
	return func(o *options) {
		for _, d := range dirs {
			if d != "" {
				o.fileDirs = append(o.fileDirs, d)
			}
		}
	}
}

// Load reads, parses and validates the manifest at path. Errors start with
// the path and name the offending field.
func Load(path string, opts ...Option) (*Model, error) {
	data, err := readManifest(path)
	if err != nil {
		return nil, err
	}
	m, err := Parse(data, filepath.Dir(path), opts...)
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
func LoadDir(dir string, opts ...Option) ([]*Model, error) {
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
		m, err := Load(filepath.Join(dir, e.Name()), opts...)
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

// Parse parses and validates a manifest; a relative file (and colormap) is
// resolved against dir, then against the folders of WithFileDirs, and must
// exist. Unknown keys are errors.
func Parse(data []byte, dir string, opts ...Option) (*Model, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
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
	if err := man.addColormapSegments(dir, o.fileDirs); err != nil {
		return nil, err
	}
	if err := man.validate(); err != nil {
		return nil, err
	}

	path, err := resolve(man.File, dir, o.fileDirs)
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	return &Model{Manifest: man, ONNXPath: path}, nil
}

// resolve finds a manifest's file: absolute as it is, else beside the
// manifest, else in the first of dirs that has it.
func resolve(file, dir string, dirs []string) (string, error) {
	if filepath.IsAbs(file) {
		return file, checkRegular(file)
	}
	first := filepath.Join(dir, file)
	err := checkRegular(first)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return first, err
	}
	if len(dirs) == 0 {
		return "", fmt.Errorf("%w (keep it beside the manifest, or name the folder that holds it in SEGBRIDGE_MODEL_FILES)", err)
	}
	for _, d := range dirs {
		p := filepath.Join(d, file)
		if err := checkRegular(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return p, err
		}
	}
	return "", fmt.Errorf("%s is neither beside the manifest (%s) nor in the model file folders %s (SEGBRIDGE_MODEL_FILES): %w",
		file, dir, strings.Join(dirs, ", "), fs.ErrNotExist)
}

func checkRegular(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// addColormapSegments reads SegmentsFrom's colormap and adds its segments to
// those the manifest lists (which win for the same label).
func (m *Manifest) addColormapSegments(dir string, dirs []string) error {
	from := m.SegmentsFrom
	if from == nil {
		return nil
	}
	if strings.TrimSpace(from.Colormap) == "" {
		return errors.New("segments_from.colormap: required")
	}
	for _, c := range []struct {
		field string
		code  dicomseg.Code
	}{{"category", from.Category}, {"type", from.Type}} {
		if c.code.Value == "" || c.code.Scheme == "" || c.code.Meaning == "" {
			return fmt.Errorf("segments_from.%s: value, scheme and meaning are required (e.g. SNOMED CT: scheme SCT)", c.field)
		}
	}
	path, err := resolve(from.Colormap, dir, dirs)
	if err != nil {
		return fmt.Errorf("segments_from.colormap: %w", err)
	}
	segs, err := colormapSegments(path, from)
	if err != nil {
		return fmt.Errorf("segments_from.colormap: %w", err)
	}
	listed := map[int]bool{}
	for _, s := range m.Segments {
		listed[s.Label] = true
	}
	for _, s := range segs {
		if !listed[s.Label] {
			m.Segments = append(m.Segments, s)
		}
	}
	slices.SortStableFunc(m.Segments, func(a, b dicomseg.Segment) int { return a.Label - b.Label })
	return nil
}

// Applies reports whether the model should be run on a series of the given
// DICOM modality, looking at the modality rule only (see Matches).
func (m *Model) Applies(modality string) bool {
	if len(m.AppliesTo.Modalities) == 0 {
		return true
	}
	return slices.ContainsFunc(m.AppliesTo.Modalities, func(s string) bool {
		return strings.EqualFold(s, strings.TrimSpace(modality))
	})
}

// SeriesInfo is what the selection rules look at in a series. The main tags
// (the first three) are what every trigger has; the rest is known only where
// a series' headers or volume were read, and zero (unknown) elsewhere: a rule
// about what is unknown passes.
type SeriesInfo struct {
	Modality          string
	SeriesDescription string
	BodyPartExamined  string

	// Acquisition is MRAcquisitionType (2D, 3D).
	Acquisition string
	// Slices is the number of slices.
	Slices int
	// SliceSpacing is the distance between slice centres in mm, and
	// SliceSpacingFrom where it was read when not from the slice positions
	// (e.g. "SpacingBetweenSlices").
	SliceSpacing     float64
	SliceSpacingFrom string
	// PixelSpacing is the in-plane spacing in mm (rows, columns).
	PixelSpacing [2]float64
	// Extent is what the series covers in mm along its columns, rows and
	// slices.
	Extent [3]float64
}

// Matches reports whether every selection rule of the model accepts the
// series, as far as the info knows it; when not, reason says which rule did
// not, in words for a log or a job's failure.
func (m *Model) Matches(s SeriesInfo) (ok bool, reason string) {
	var why []string
	if !m.Applies(s.Modality) {
		why = append(why, fmt.Sprintf("modality %q is not one of %s", s.Modality, strings.Join(m.AppliesTo.Modalities, ", ")))
	}
	if re := m.AppliesTo.descRe; m.AppliesTo.SeriesDescription != "" {
		if re == nil { // a Model built without Parse
			var err error
			if re, err = regexp.Compile(m.AppliesTo.SeriesDescription); err != nil {
				return false, fmt.Sprintf("series_description rule: %v", err)
			}
		}
		if !re.MatchString(s.SeriesDescription) {
			why = append(why, fmt.Sprintf("series description %q does not match %q", s.SeriesDescription, m.AppliesTo.SeriesDescription))
		}
	}
	if len(m.AppliesTo.BodyParts) > 0 && !slices.ContainsFunc(m.AppliesTo.BodyParts, func(b string) bool {
		return strings.EqualFold(strings.TrimSpace(b), strings.TrimSpace(s.BodyPartExamined))
	}) {
		why = append(why, fmt.Sprintf("body part %q is not one of %s", s.BodyPartExamined, strings.Join(m.AppliesTo.BodyParts, ", ")))
	}
	if ok, geo := m.AppliesTo.checkGeometry(s); !ok {
		why = append(why, "the model was not trained for this series: "+geo)
	}
	return len(why) == 0, strings.Join(why, "; ")
}

// Matching returns the models that apply to a series, in the given order; a
// series may match several or none.
func Matching(models []*Model, s SeriesInfo) []*Model {
	var out []*Model
	for _, m := range models {
		if ok, _ := m.Matches(s); ok {
			out = append(out, m)
		}
	}
	return out
}

// Segments returns a copy of the manifest's segment descriptions, for the SEG
// writer.
func (m *Model) Segments() []dicomseg.Segment {
	return slices.Clone(m.Manifest.Segments)
}
