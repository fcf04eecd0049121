package model

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/segbridge/segbridge/internal/dicomseg"
)

// Manifest is the YAML file beside an .onnx file that says everything the
// pipeline needs to run the model correctly. Every section is a struct, so that
// later options (2-D slice mode, sliding windows, reorientation, resampling,
// cropping, percentile and z-score normalisation, label remapping, largest
// connected component) are new keys in an existing section, and manifests
// written today keep their meaning. Unknown keys are rejected, so a manifest
// that asks for an option this version does not have fails to load instead of
// being run without it.
type Manifest struct {
	// Name identifies the model in job ids, logs and the SEG's algorithm name:
	// [a-z0-9][a-z0-9_-]*, at most 64 characters. Required.
	Name string `yaml:"name"`
	// Version of the model, e.g. 1.0.0: a series is re-segmented when it
	// changes. Letters, digits and . _ - only (it becomes part of job ids and
	// queue keys), starting with a letter or digit, at most 64. Required.
	Version string `yaml:"version"`
	// Description is free text for people.
	Description string `yaml:"description,omitempty"`
	// File is the .onnx file, relative to the manifest's folder or absolute.
	// Required; it must exist.
	File string `yaml:"file"`
	// Learned says whether the weights were trained (true) or the network was
	// built by hand (false, as segbridge's reference models are). Required, so
	// that nobody has to guess.
	Learned *bool `yaml:"learned"`
	// AppliesTo selects the series the model is run on.
	AppliesTo Selector `yaml:"applies_to"`
	// Input says how the volume is fed to the network.
	Input Input `yaml:"input"`
	// Preprocess says what is done to the volume before it is fed.
	Preprocess Preprocess `yaml:"preprocess"`
	// Output says how the network's output becomes a label volume.
	Output Output `yaml:"output"`
	// Segments describes the labels that the model produces: label value, name,
	// SNOMED CT category and type, display colour. At least one; labels 1..255,
	// unique. Labels the model produces that are not listed here are written as
	// background.
	Segments []dicomseg.Segment `yaml:"segments"`
}

// Selector decides which series a model applies to.
type Selector struct {
	// Modalities lists the DICOM Modality values (e.g. MR, CT) the model is run
	// on, compared case-insensitively. Empty means any modality.
	Modalities []string `yaml:"modalities,omitempty"`
}

// InputMode is how a volume is presented to the network.
type InputMode string

// Input modes. Only InputVolume is implemented; 2-D slices and sliding-window
// patches will be added as further modes.
const (
	// InputVolume feeds the whole volume as one float32 tensor
	// [1, 1, Depth, Rows, Cols], the volume's own memory order.
	InputVolume InputMode = "volume"
)

var inputModes = []InputMode{InputVolume}

// Input describes the network's input.
type Input struct {
	// Name of the graph input. Default "input".
	Name string `yaml:"name"`
	// Mode is how the volume is fed. Default and, for now, only value: volume.
	Mode InputMode `yaml:"mode"`
}

// Preprocess groups the steps applied to the volume before inference, in the
// order they run. Geometric steps (reorient, resample, conform, crop) will be
// added here.
type Preprocess struct {
	// Intensity normalisation.
	Intensity Intensity `yaml:"intensity"`
}

// IntensityMethod names an intensity normalisation.
type IntensityMethod string

// Intensity normalisation methods.
const (
	// IntensityNone feeds the modality values unchanged.
	IntensityNone IntensityMethod = "none"
	// IntensityMinMax maps the volume's minimum to 0 and maximum to 1. A
	// constant volume becomes all 0.
	IntensityMinMax IntensityMethod = "minmax"
	// IntensityFixed maps the window [Min, Max] to [0, 1] and clips outside it.
	IntensityFixed IntensityMethod = "fixed"
)

var intensityMethods = []IntensityMethod{IntensityNone, IntensityMinMax, IntensityFixed}

// Intensity is an intensity normalisation.
type Intensity struct {
	// Method is none, minmax or fixed. Default minmax.
	Method IntensityMethod `yaml:"method"`
	// Min and Max are the window of method fixed, in modality units
	// (after rescale slope and intercept); both required there with Min < Max,
	// and not allowed with other methods.
	Min *float64 `yaml:"min,omitempty"`
	Max *float64 `yaml:"max,omitempty"`
}

// Activation says what the network's output channels mean.
type Activation string

// Output activations.
const (
	// ActivationSigmoid: the output is probabilities, channel c is label c+1
	// (so C channels for labels 1..C). A voxel gets the label of its most
	// probable channel if that reaches Threshold, else 0. The usual case is
	// one channel and one label.
	ActivationSigmoid Activation = "sigmoid"
	// ActivationSoftmax: the output is class scores (probabilities or
	// logits), channel 0 background and channel c label c; a voxel gets the
	// label of its highest channel (argmax). C = highest label + 1.
	ActivationSoftmax Activation = "softmax"
	// ActivationNone: the output is raw values. With one channel a voxel is
	// label 1 where the value reaches Threshold; with C > 1 channels it is
	// argmax as for softmax.
	ActivationNone Activation = "none"
)

var activations = []Activation{ActivationSigmoid, ActivationSoftmax, ActivationNone}

// DefaultThreshold is the threshold of sigmoid and none outputs when the
// manifest gives none; it is what the seed's PyTorch model used.
const DefaultThreshold = 0.5

// Output describes the network's output and how it becomes labels.
type Output struct {
	// Name of the graph output. Default "output".
	Name string `yaml:"name"`
	// Activation is sigmoid, softmax or none. Required.
	Activation Activation `yaml:"activation"`
	// Threshold for sigmoid (in (0, 1)) and single-channel none outputs.
	// Default 0.5. Not allowed with softmax.
	Threshold *float64 `yaml:"threshold,omitempty"`
}

// ThresholdOrDefault is the threshold to apply: the manifest's, else
// DefaultThreshold.
func (o Output) ThresholdOrDefault() float64 {
	if o.Threshold != nil {
		return *o.Threshold
	}
	return DefaultThreshold
}

// MaxLabel is the highest segment label, which fixes how many output channels
// the model must produce.
func (m *Manifest) MaxLabel() int {
	hi := 0
	for _, s := range m.Segments {
		hi = max(hi, s.Label)
	}
	return hi
}

var (
	nameRe     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	versionRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	modalityRe = regexp.MustCompile(`^[A-Za-z0-9_]{1,16}$`)
)

const maxIDLen = 64

// setDefaults fills the defaults that the field comments document.
func (m *Manifest) setDefaults() {
	if m.Input.Name == "" {
		m.Input.Name = "input"
	}
	if m.Input.Mode == "" {
		m.Input.Mode = InputVolume
	}
	if m.Preprocess.Intensity.Method == "" {
		m.Preprocess.Intensity.Method = IntensityMinMax
	}
	if m.Output.Name == "" {
		m.Output.Name = "output"
	}
	if m.Output.Threshold == nil && m.Output.Activation != ActivationSoftmax {
		t := DefaultThreshold
		m.Output.Threshold = &t
	}
}

// validate checks everything but the model file; errors name the field.
func (m *Manifest) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}

	switch {
	case m.Name == "":
		bad("name", "required")
	case len(m.Name) > maxIDLen || !nameRe.MatchString(m.Name):
		bad("name", "%q must match [a-z0-9][a-z0-9_-]* and be at most %d characters", m.Name, maxIDLen)
	}
	switch {
	case m.Version == "":
		bad("version", "required")
	case len(m.Version) > maxIDLen || !versionRe.MatchString(m.Version):
		bad("version", "%q must be letters, digits and . _ - (e.g. 1.0.0), at most %d characters", m.Version, maxIDLen)
	}
	if strings.TrimSpace(m.File) == "" {
		bad("file", "required")
	}
	if m.Learned == nil {
		bad("learned", "required: true for trained weights, false for a hand-built network")
	}

	for i, mod := range m.AppliesTo.Modalities {
		if !modalityRe.MatchString(mod) {
			bad(fmt.Sprintf("applies_to.modalities[%d]", i), "%q is not a DICOM modality code", mod)
		}
	}

	if !isOneOf(m.Input.Mode, inputModes) {
		bad("input.mode", "%q is not one of %s", m.Input.Mode, join(inputModes))
	}

	in := m.Preprocess.Intensity
	switch {
	case !isOneOf(in.Method, intensityMethods):
		bad("preprocess.intensity.method", "%q is not one of %s", in.Method, join(intensityMethods))
	case in.Method == IntensityFixed:
		switch {
		case in.Min == nil || in.Max == nil:
			bad("preprocess.intensity", "method fixed needs min and max")
		case !(*in.Min < *in.Max): // also catches NaN
			bad("preprocess.intensity", "min %v must be less than max %v", *in.Min, *in.Max)
		case math.IsInf(*in.Min, 0) || math.IsInf(*in.Max, 0):
			bad("preprocess.intensity", "min and max must be finite")
		}
	default:
		if in.Min != nil || in.Max != nil {
			bad("preprocess.intensity", "min and max are only for method fixed, not %s", in.Method)
		}
	}

	out := m.Output
	switch {
	case out.Activation == "":
		bad("output.activation", "required: one of %s", join(activations))
	case !isOneOf(out.Activation, activations):
		bad("output.activation", "%q is not one of %s", out.Activation, join(activations))
	case out.Activation == ActivationSoftmax && out.Threshold != nil:
		bad("output.threshold", "not used with softmax activation (labels are the argmax)")
	case out.Activation == ActivationSigmoid && out.Threshold != nil && !(*out.Threshold > 0 && *out.Threshold < 1):
		bad("output.threshold", "%v must be in (0, 1) for sigmoid activation", *out.Threshold)
	case out.Activation == ActivationNone && out.Threshold != nil && !isFinite(*out.Threshold):
		bad("output.threshold", "must be a finite number")
	}

	if len(m.Segments) == 0 {
		bad("segments", "at least one segment is required")
	}
	seen := make(map[int]int, len(m.Segments))
	for i, s := range m.Segments {
		f := fmt.Sprintf("segments[%d]", i)
		if s.Label < 1 || s.Label > 255 {
			bad(f+".label", "%d is not in 1..255", s.Label)
		} else if j, dup := seen[s.Label]; dup {
			bad(f+".label", "%d is also the label of segments[%d]", s.Label, j)
		} else {
			seen[s.Label] = i
		}
		if strings.TrimSpace(s.Name) == "" {
			bad(f+".name", "required")
		}
		for _, c := range []struct {
			field string
			code  dicomseg.Code
		}{{"category", s.Category}, {"type", s.Type}} {
			if c.code.Value == "" || c.code.Scheme == "" || c.code.Meaning == "" {
				bad(f+"."+c.field, "value, scheme and meaning are required (e.g. SNOMED CT: scheme SCT)")
			}
		}
	}
	return errors.Join(errs...)
}

func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func isOneOf[T comparable](v T, set []T) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

func join[T ~string](set []T) string {
	s := make([]string, len(set))
	for i, v := range set {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
