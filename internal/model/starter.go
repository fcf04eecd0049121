package model

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/segbridge/segbridge/internal/onnx"
)

// ChooseMark marks, in a starter manifest, every value that segbridge
// guessed and the person must confirm or change.
const ChooseMark = "# CHOOSE:"

// Starter writes a manifest to start from for the ONNX graph g stored as
// file (a path relative to the manifest, or absolute): the input's and
// output's names, the input mode its rank and fixed sizes imply (4-D [N, C,
// H, W]: 2-D slices in batches; 5-D [1, 1, D, H, W]: the whole volume, or
// sliding windows when D, H and W are fixed), the channel counts, and
// segments for the output's classes. What the graph cannot say —
// modalities, orientation, spacing, intensity normalisation, activation,
// segment names and codes — is filled with a common choice and marked with
// ChooseMark. The result loads as it is, so `segbridge models check` can run
// it at once.
func Starter(file string, g *onnx.Model) ([]byte, error) {
	ins := g.Graph.DataInputs()
	if len(ins) == 0 {
		return nil, fmt.Errorf("the graph has no inputs")
	}
	if len(g.Graph.Outputs) == 0 {
		return nil, fmt.Errorf("the graph has no outputs")
	}
	in, out := ins[0], g.Graph.Outputs[0]
	for _, v := range []struct {
		what string
		v    onnx.ValueInfo
	}{{"input", in}, {"output", out}} {
		if v.v.Kind != "tensor" && v.v.Kind != "" {
			return nil, fmt.Errorf("%s %q is a %s, not a tensor", v.what, v.v.Name, v.v.Kind)
		}
		if v.v.ElemType != onnx.Float && v.v.ElemType != onnx.Undefined {
			return nil, fmt.Errorf("%s %q is %s; segbridge feeds and reads float32 tensors (export the model in float32)", v.what, v.v.Name, v.v.ElemType)
		}
	}

	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	name := starterName(file)
	line("# Starter manifest for %s, written by `segbridge models init` from the", filepath.Base(file))
	line("# graph's inputs and outputs. Every line marked %q is a guess:", ChooseMark)
	line("# confirm or change it, then run `segbridge models check` on this file.")
	line("# The format is described in models/README.md.")
	line("name: %s", name)
	line("version: 0.1.0          %s a new version makes segbridge segment every series again", ChooseMark)
	line("file: %s", yamlString(file))
	line("learned: true")
	if len(ins) > 1 {
		var names []string
		for _, v := range ins[1:] {
			names = append(names, v.Name)
		}
		line("# The graph has more inputs (%s): segbridge feeds one.", strings.Join(names, ", "))
	}
	line("applies_to:")
	line("  modalities: [MR]       %s the modalities the model was trained on", ChooseMark)
	line("  # series_description: \"(?i)t1\"   %s a regular expression the description must match", ChooseMark)
	line("  # What the model was trained on (a series outside is skipped with the reason):")
	line("  # acquisition: 3D       # MRAcquisitionType: 2D or 3D")
	line("  # max_slice_spacing: 1.5")
	line("  # max_pixel_spacing: 1.5")
	line("  # min_slices: 20")
	line("  # min_field_of_view: 120")

	shape := in.Shape
	line("input:")
	line("  name: %s", yamlString(in.Name))
	switch {
	case len(shape) == 4:
		c := int64(1)
		line("  mode: slices           # the input is %s: 2-D slices [N, C, H, W] in batches", onnx.ShapeString(shape))
		switch {
		case shape[0].IsFixed():
			line("  batch_size: %d          # the graph's fixed batch size", shape[0].Value)
		default:
			line("  batch_size: 8          %s the graph's batch axis %s is free: any size runs; larger uses more memory", ChooseMark, shape[0])
		}
		if shape[1].IsFixed() {
			c = shape[1].Value
			line("  channels: %d", c)
		} else {
			line("  channels: 1            %s the graph's channel axis %s is free", ChooseMark, shape[1])
		}
		if c > 1 {
			line("  channel_mode: repeat   %s repeat (the slice in every channel) or neighbours (the %d slices around it, 2.5-D)", ChooseMark, c)
		}
		if shape[2].IsFixed() || shape[3].IsFixed() {
			line("  # The graph takes slices of %s x %s pixels: resample the series to that size below (preprocess.geometry).", shape[2], shape[3])
		}
	case len(shape) == 5:
		if shape[1].IsFixed() && shape[1].Value != 1 {
			return nil, fmt.Errorf("input %q is %s: in volume and window modes segbridge feeds one channel, [1, 1, D, H, W]", in.Name, onnx.ShapeString(shape))
		}
		if shape[2].IsFixed() && shape[3].IsFixed() && shape[4].IsFixed() {
			line("  mode: window           # the input is %s: fixed-size 3-D patches, blended", onnx.ShapeString(shape))
			line("  patch_size: [%d, %d, %d]", shape[2].Value, shape[3].Value, shape[4].Value)
			line("  overlap: 0.5           %s how much neighbouring patches overlap, 0 to <1", ChooseMark)
			line("  blending: gaussian")
		} else {
			line("  mode: volume           # the input is %s: the whole volume at once", onnx.ShapeString(shape))
		}
	default:
		return nil, fmt.Errorf("input %q is %s: segbridge feeds 2-D slices [N, C, H, W] or volumes [1, 1, D, H, W]", in.Name, onnx.ShapeString(shape))
	}

	line("preprocess:")
	line("  geometry:")
	if len(shape) == 4 {
		line("    orientation: SPL       %s axial slices: D runs superior, H posterior (rows), W left (columns), as a radiologist views them", ChooseMark)
	} else {
		line("    orientation: RAS       %s the axes of the training arrays: RAS is nibabel's and MONAI's canonical D = right, H = anterior, W = superior", ChooseMark)
	}
	line("    # spacing: [1, 1, 1]   %s resample to the voxel size (mm) of the training data", ChooseMark)
	line("  intensity:")
	line("    method: zscore         %s as in training: minmax, percentile (lower, upper, clip), zscore, fixed (min, max), none", ChooseMark)

	k := int64(0)
	if len(out.Shape) >= 2 && out.Shape[1].IsFixed() {
		k = out.Shape[1].Value
	}
	line("output:")
	line("  name: %s", yamlString(out.Name))
	var labels int64
	switch {
	case k == 1:
		line("  activation: sigmoid    %s the output %s has one channel: sigmoid if the network ends with a sigmoid (probabilities); none with threshold 0 if it gives logits", ChooseMark, onnx.ShapeString(out.Shape))
		line("  threshold: 0.5")
		labels = 1
	case k > 1:
		line("  activation: softmax    %s the output %s has %d channels: class scores, channel 0 background, label = argmax", ChooseMark, onnx.ShapeString(out.Shape), k)
		labels = min(k-1, 255)
	default:
		line("  activation: softmax    %s the output %s does not fix its channels: softmax (argmax) for several, sigmoid for one", ChooseMark, onnx.ShapeString(out.Shape))
		line("  channels: 2")
		labels = 1
	}
	line("segments:               %s a name, SNOMED CT codes and a colour per label", ChooseMark)
	for l := int64(1); l <= labels; l++ {
		line("  - label: %d", l)
		line("    name: Segment %d", l)
		line(`    category: { value: "123037004", scheme: SCT, meaning: "Anatomical Structure" }`)
		line(`    type: { value: "85756007", scheme: SCT, meaning: "Tissue" }`)
		line("    rgb: [%d, %d, %d]", (l*97)%256, (l*57+128)%256, (l*181+64)%256)
	}
	line("# plausibility:            the volumes results are expected to have; outside, a warning")
	line("#   volume_ml: { 1: [1, 100] }")
	return []byte(b.String()), nil
}

var (
	nameUnsafe = regexp.MustCompile(`[^a-z0-9_-]+`)
	yamlPlain  = regexp.MustCompile(`^[A-Za-z0-9_./][A-Za-z0-9_./-]*$`)
)

// starterName makes a model name from a file name: best_model.onnx →
// best_model.
func starterName(file string) string {
	n := strings.ToLower(strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)))
	n = strings.Trim(nameUnsafe.ReplaceAllString(n, "-"), "-_")
	if n == "" {
		n = "model"
	}
	if len(n) > maxIDLen {
		n = n[:maxIDLen]
	}
	return n
}

// yamlString quotes a string for YAML when it needs it.
func yamlString(s string) string {
	if yamlPlain.MatchString(s) {
		return s
	}
	return fmt.Sprintf("%q", s)
}
