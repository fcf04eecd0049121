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
	// SNOMED CT category and type, display colour. At least one (here or from
	// SegmentsFrom); labels 1..255, unique. Labels the model produces that are
	// not listed here are written as background.
	Segments []dicomseg.Segment `yaml:"segments"`
	// SegmentsFrom reads further segments from a colormap file; segments
	// listed in Segments replace those of the same label.
	SegmentsFrom *SegmentsFrom `yaml:"segments_from,omitempty"`
	// Plausibility says what results to expect; a result outside it is
	// stored all the same, with a warning.
	Plausibility Plausibility `yaml:"plausibility,omitempty"`
}

// Selector decides which series a model applies to. Every rule that is set
// must match; an empty Selector matches every series.
type Selector struct {
	// Modalities lists the DICOM Modality values (e.g. MR, CT) the model is run
	// on, compared case-insensitively. Empty means any modality.
	Modalities []string `yaml:"modalities,omitempty"`
	// SeriesDescription is a regular expression (Go syntax, e.g. "(?i)t1|mprage")
	// that must match somewhere in the series' SeriesDescription. Empty means
	// any description.
	SeriesDescription string `yaml:"series_description,omitempty"`
	// BodyParts lists BodyPartExamined values (e.g. BRAIN, HEAD), compared
	// case-insensitively. Empty means any; a series without the attribute
	// matches only when the list contains "" (written as '').
	BodyParts []string `yaml:"body_parts,omitempty"`

	// The rules below say what acquisitions the model was trained on. They
	// need the series' headers or geometry, which an automatic trigger does
	// not have: the manual trigger checks them from the first instance's
	// header, and the worker from the assembled volume, which skips the job
	// with the reason. See Rules.

	// Acquisition is the MRAcquisitionType the model was trained on: 2D or
	// 3D. A series that gives another value is refused; one without the
	// attribute is judged by the geometry rules alone.
	Acquisition string `yaml:"acquisition,omitempty"`
	// MaxSliceSpacing is the largest distance between slice centres, in mm.
	MaxSliceSpacing float64 `yaml:"max_slice_spacing,omitempty"`
	// MaxPixelSpacing is the largest in-plane pixel spacing (rows or
	// columns), in mm.
	MaxPixelSpacing float64 `yaml:"max_pixel_spacing,omitempty"`
	// MinSlices is the fewest slices a series may have.
	MinSlices int `yaml:"min_slices,omitempty"`
	// MinFieldOfView is the least extent, in mm, the series must cover along
	// each of its three axes (columns × spacing, rows × spacing, slices ×
	// slice spacing): a slab or a partial field of view is refused.
	MinFieldOfView float64 `yaml:"min_field_of_view,omitempty"`

	descRe *regexp.Regexp
}

// InputMode is how a volume is presented to the network.
type InputMode string

// Input modes. In every mode the model sees the (preprocessed) volume as
// [D, H, W]: without a geometry section that is [Depth, Rows, Cols], the
// series' own slices, rows and columns; with preprocess.geometry, D, H and W
// are the axes named by its orientation, in that order.
const (
	// InputVolume feeds the whole volume (or its crop) as one float32 tensor
	// [1, 1, D, H, W]; the output is [1, C, D, H, W].
	InputVolume InputMode = "volume"
	// InputSlices feeds 2-D slices [H, W] along D in batches: [N, C, H, W]
	// with N = BatchSize (the last batch may be smaller) and C = Channels;
	// the output is [N, K, H, W].
	InputSlices InputMode = "slices"
	// InputWindow feeds 3-D patches of PatchSize with Overlap, one at a time
	// as [1, 1, PD, PH, PW], and blends the overlapping outputs
	// [1, K, PD, PH, PW] into one [K, D, H, W] before the activation is
	// decided. It holds K floats per voxel, so it suits models with few
	// classes.
	InputWindow InputMode = "window"
)

var inputModes = []InputMode{InputVolume, InputSlices, InputWindow}

// Blending is how overlapping sliding-window outputs are combined.
type Blending string

// Blendings.
const (
	// BlendGaussian weighs each patch's voxels with a Gaussian centred on the
	// patch (sigma 1/8 of its size, as nnU-Net), so patch borders count less.
	BlendGaussian Blending = "gaussian"
	// BlendConstant averages overlapping outputs with equal weights.
	BlendConstant Blending = "constant"
)

var blendings = []Blending{BlendGaussian, BlendConstant}

// ChannelMode is how slice mode fills C > 1 input channels.
type ChannelMode string

// Channel modes.
const (
	// ChannelsRepeat copies the slice into every channel (2-D networks with
	// an RGB encoder).
	ChannelsRepeat ChannelMode = "repeat"
	// ChannelsNeighbours fills the channels with the C slices centred on the
	// slice being segmented (2.5-D networks; C odd); slices beyond the
	// volume's ends repeat the end slice.
	ChannelsNeighbours ChannelMode = "neighbours"
)

var channelModes = []ChannelMode{ChannelsRepeat, ChannelsNeighbours}

// Input describes the network's input.
type Input struct {
	// Name of the graph input. Default "input".
	Name string `yaml:"name"`
	// Mode is volume (the default), slices or window.
	Mode InputMode `yaml:"mode"`
	// BatchSize is the number of slices per run in slice mode. Default 8;
	// not allowed in other modes.
	BatchSize int `yaml:"batch_size,omitempty"`
	// Channels is C of slice mode's [N, C, H, W]. Default 1; not allowed in
	// other modes.
	Channels int `yaml:"channels,omitempty"`
	// ChannelMode says how C > 1 channels are filled: repeat (default) or
	// neighbours.
	ChannelMode ChannelMode `yaml:"channel_mode,omitempty"`
	// PatchSize is window mode's patch [D, H, W] in voxels. Required in
	// window mode, not allowed in others. A volume smaller than the patch is
	// padded with zeros.
	PatchSize []int `yaml:"patch_size,omitempty"`
	// Overlap is the fraction of a patch that its neighbour overlaps, in
	// [0, 1). Default 0.5 in window mode.
	Overlap *float64 `yaml:"overlap,omitempty"`
	// Blending is gaussian (default) or constant.
	Blending Blending `yaml:"blending,omitempty"`
}

// Preprocess groups the steps applied to the volume before inference. They
// run in this order: geometry (reorient, resample or conform, including
// conform's intensity scaling), intensity normalisation, then the crop to
// the foreground (which is found on the normalised intensities).
type Preprocess struct {
	// Geometry is what is done to the voxel grid. Absent: the series' own
	// grid is used as it is.
	Geometry Geometry `yaml:"geometry"`
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
	// IntensityPercentile maps the Lower and Upper percentiles of all voxels
	// to 0 and 1 (numpy's quantile with linear interpolation), clipping
	// outside them when Clip is true.
	IntensityPercentile IntensityMethod = "percentile"
	// IntensityZScore subtracts the mean and divides by the standard
	// deviation, over all voxels or, with Foreground, over the non-zero
	// voxels only (zero voxels then stay 0).
	IntensityZScore IntensityMethod = "zscore"
	// IntensityRobust255 is FreeSurfer's conform scaling: the minimum maps
	// to 0 and the Upper percentile of the non-zero voxels (default 99.9) to
	// 255, clipped to 0..255 and rounded, as mri_convert --conform's uint8.
	IntensityRobust255 IntensityMethod = "robust255"
)

var intensityMethods = []IntensityMethod{IntensityNone, IntensityMinMax, IntensityFixed, IntensityPercentile, IntensityZScore, IntensityRobust255}

// Intensity is an intensity normalisation.
type Intensity struct {
	// Method is none, minmax, fixed, percentile, zscore or robust255.
	// Default minmax.
	Method IntensityMethod `yaml:"method"`
	// Min and Max are the window of method fixed, in modality units
	// (after rescale slope and intercept); both required there with Min < Max,
	// and not allowed with other methods.
	Min *float64 `yaml:"min,omitempty"`
	Max *float64 `yaml:"max,omitempty"`
	// Lower and Upper are percentiles in [0, 100]: both required for
	// percentile (Lower < Upper); Upper alone for robust255 (default 99.9).
	Lower *float64 `yaml:"lower,omitempty"`
	Upper *float64 `yaml:"upper,omitempty"`
	// Clip clips percentile's output to [0, 1]. Default false.
	Clip bool `yaml:"clip,omitempty"`
	// Foreground computes zscore's mean and deviation over non-zero voxels.
	Foreground bool `yaml:"foreground,omitempty"`
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
	// Channels is the number of output channels the network gives. Default:
	// what the segments (or Remap) imply: for softmax, the highest class + 1
	// (channel 0 is background); for sigmoid, the highest class (channel c
	// is class c+1). Give it when the network has classes the manifest does
	// not write (e.g. a 3-class tissue model used as a brain mask).
	Channels int `yaml:"channels,omitempty"`
	// Remap maps the network's classes to segment labels, e.g. {1: 1, 2: 1}
	// to merge white and grey matter into one brain label. With Remap, a
	// class that is not listed becomes background; without it, class c is
	// label c. Classes 1..65535, labels 0..255.
	Remap map[int]int `yaml:"remap,omitempty"`
	// LargestComponent keeps only the largest 26-connected component of the
	// labelled (non-background) voxels, before they are mapped back to the
	// series' grid. Default false.
	LargestComponent bool `yaml:"largest_component,omitempty"`
}

// ThresholdOrDefault is the threshold to apply: the manifest's, else
// DefaultThreshold.
func (o Output) ThresholdOrDefault() float64 {
	if o.Threshold != nil {
		return *o.Threshold
	}
	return DefaultThreshold
}

// MaxLabel is the highest segment label.
func (m *Manifest) MaxLabel() int {
	hi := 0
	for _, s := range m.Segments {
		hi = max(hi, s.Label)
	}
	return hi
}

// MaxClass is the highest network class the manifest reads: the highest
// key of Output.Remap, else MaxLabel.
func (m *Manifest) MaxClass() int {
	if m.Output.Remap == nil {
		return m.MaxLabel()
	}
	hi := 0
	for c := range m.Output.Remap {
		hi = max(hi, c)
	}
	return hi
}

// impliedChannels is the number of output channels the classes need.
func (m *Manifest) impliedChannels() int {
	if m.Output.Activation == ActivationSigmoid {
		return m.MaxClass()
	}
	return m.MaxClass() + 1
}

// OutputChannels is the number of channels the network's output must have:
// Output.Channels when given, else what the activation and classes imply.
// For activation none without Output.Channels it returns 0: one channel
// (thresholded) and MaxClass()+1 channels (argmax) are both accepted.
func (m *Manifest) OutputChannels() int {
	switch {
	case m.Output.Channels > 0:
		return m.Output.Channels
	case m.Output.Activation == ActivationNone:
		return 0
	}
	return m.impliedChannels()
}

// LabelOf returns the segment label of network class c: Output.Remap's,
// else c itself.
func (m *Manifest) LabelOf(c int) int {
	if m.Output.Remap == nil {
		return c
	}
	return m.Output.Remap[c]
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
	if m.Input.Mode == InputSlices {
		if m.Input.BatchSize == 0 {
			m.Input.BatchSize = 8
		}
		if m.Input.Channels == 0 {
			m.Input.Channels = 1
		}
		if m.Input.ChannelMode == "" {
			m.Input.ChannelMode = ChannelsRepeat
		}
	}
	if m.Input.Mode == InputWindow {
		if m.Input.Overlap == nil {
			o := 0.5
			m.Input.Overlap = &o
		}
		if m.Input.Blending == "" {
			m.Input.Blending = BlendGaussian
		}
	}
	if m.Preprocess.Geometry.Conform != nil {
		m.Preprocess.Geometry.Conform.setDefaults()
	}
	if in := &m.Preprocess.Intensity; in.Method == IntensityRobust255 && in.Upper == nil {
		u := 99.9
		in.Upper = &u
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

	if m.AppliesTo.SeriesDescription != "" {
		re, err := regexp.Compile(m.AppliesTo.SeriesDescription)
		if err != nil {
			bad("applies_to.series_description", "%v", err)
		}
		m.AppliesTo.descRe = re
	}
	for i, bp := range m.AppliesTo.BodyParts {
		if len(bp) > 16 {
			bad(fmt.Sprintf("applies_to.body_parts[%d]", i), "%q is longer than a BodyPartExamined value (16)", bp)
		}
	}

	m.AppliesTo.validateRules(bad)
	m.Input.validate(bad)
	m.Preprocess.Geometry.validate(bad)

	in := m.Preprocess.Intensity
	if in.Method != IntensityPercentile && in.Method != IntensityRobust255 && (in.Lower != nil || in.Upper != nil) {
		bad("preprocess.intensity", "lower and upper are only for methods percentile and robust255, not %s", in.Method)
	}
	if in.Clip && in.Method != IntensityPercentile {
		bad("preprocess.intensity.clip", "only for method percentile")
	}
	if in.Foreground && in.Method != IntensityZScore {
		bad("preprocess.intensity.foreground", "only for method zscore")
	}
	pct := func(p *float64) bool { return p != nil && *p >= 0 && *p <= 100 }
	switch {
	case !isOneOf(in.Method, intensityMethods):
		bad("preprocess.intensity.method", "%q is not one of %s", in.Method, join(intensityMethods))
	case in.Method == IntensityPercentile:
		switch {
		case in.Lower == nil || in.Upper == nil:
			bad("preprocess.intensity", "method percentile needs lower and upper (percentiles, e.g. 5 and 95)")
		case !pct(in.Lower) || !pct(in.Upper):
			bad("preprocess.intensity", "lower %v and upper %v must be percentiles in [0, 100]", *in.Lower, *in.Upper)
		case !(*in.Lower < *in.Upper):
			bad("preprocess.intensity", "lower %v must be less than upper %v", *in.Lower, *in.Upper)
		}
		if in.Min != nil || in.Max != nil {
			bad("preprocess.intensity", "min and max are only for method fixed, not %s", in.Method)
		}
	case in.Method == IntensityRobust255:
		if in.Lower != nil {
			bad("preprocess.intensity.lower", "not used by robust255 (its lower end is the minimum)")
		}
		if !pct(in.Upper) || *in.Upper == 0 {
			bad("preprocess.intensity.upper", "must be a percentile in (0, 100]")
		}
		if in.Min != nil || in.Max != nil {
			bad("preprocess.intensity", "min and max are only for method fixed, not %s", in.Method)
		}
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
	if out.Channels < 0 || out.Channels > 65536 {
		bad("output.channels", "%d is not in 1..65536", out.Channels)
	}
	for class, label := range out.Remap {
		if class < 0 || class > 65535 {
			bad("output.remap", "class %d is not in 0..65535", class)
		}
		if label < 0 || label > 255 {
			bad("output.remap", "class %d maps to label %d, not in 0..255", class, label)
		}
	}
	if c := out.Channels; c > 0 && out.Activation != ActivationNone {
		if need := m.impliedChannels(); c < need {
			bad("output.channels", "%d channels cannot hold the classes the segments or remap use (%d needed)", c, need)
		}
	}

	if len(m.Segments) == 0 {
		bad("segments", "at least one segment is required (or segments_from)")
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
	m.Plausibility.validate(seen, bad)
	return errors.Join(errs...)
}

func (in *Input) validate(bad func(field, format string, args ...any)) {
	if !isOneOf(in.Mode, inputModes) {
		bad("input.mode", "%q is not one of %s", in.Mode, join(inputModes))
		return
	}
	if in.Mode != InputSlices && (in.BatchSize != 0 || in.Channels != 0 || in.ChannelMode != "") {
		bad("input", "batch_size, channels and channel_mode are only for mode slices, not %s", in.Mode)
	}
	if in.Mode != InputWindow && (in.PatchSize != nil || in.Overlap != nil || in.Blending != "") {
		bad("input", "patch_size, overlap and blending are only for mode window, not %s", in.Mode)
	}
	switch in.Mode {
	case InputSlices:
		if in.BatchSize < 1 || in.BatchSize > 4096 {
			bad("input.batch_size", "%d is not in 1..4096", in.BatchSize)
		}
		if in.Channels < 1 || in.Channels > 64 {
			bad("input.channels", "%d is not in 1..64", in.Channels)
		}
		switch {
		case !isOneOf(in.ChannelMode, channelModes):
			bad("input.channel_mode", "%q is not one of %s", in.ChannelMode, join(channelModes))
		case in.ChannelMode == ChannelsNeighbours && in.Channels%2 == 0:
			bad("input.channel_mode", "neighbours needs an odd number of channels, not %d", in.Channels)
		}
	case InputWindow:
		if len(in.PatchSize) != 3 {
			bad("input.patch_size", "window mode needs 3 sizes [D, H, W] in voxels")
		} else {
			for _, p := range in.PatchSize {
				if p < 1 || p > 1024 {
					bad("input.patch_size", "%d is not in 1..1024", p)
					break
				}
			}
		}
		if in.Overlap != nil && !(*in.Overlap >= 0 && *in.Overlap < 1) {
			bad("input.overlap", "%v is not in [0, 1)", *in.Overlap)
		}
		if !isOneOf(in.Blending, blendings) {
			bad("input.blending", "%q is not one of %s", in.Blending, join(blendings))
		}
	}
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
