// Package modelcheck runs a model once on a synthetic head-like volume and
// reports what it fed the network and what it got back, so that a person
// bringing their own model sees whether its manifest fits it before any
// series is sent (`segbridge models check`).
package modelcheck

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/onnx"
	"github.com/segbridge/segbridge/internal/pipeline"
	"github.com/segbridge/segbridge/internal/volume"
)

// Runner is what a check needs of the model runtime (inference.Runtime).
type Runner interface {
	SegmentWith(ctx context.Context, m *model.Model, v *volume.Volume, opts inference.SegmentOptions) (*inference.Result, error)
	RunFile(ctx context.Context, path, input, output string, in inference.Tensor) (*inference.Tensor, error)
}

var _ Runner = (*inference.Runtime)(nil)

// Report is what a check found.
type Report struct {
	// Volume is the synthetic volume's size (columns, rows, slices) and
	// voxel size in mm.
	Volume  [3]int
	Spacing float64
	// ModelShape is the [D, H, W] the model saw after preprocessing.
	ModelShape [3]int
	// Fed describes one input tensor, e.g. "[8, 1, 128, 128]", and Runs how
	// many the model was fed.
	Fed  string
	Runs int
	// Output is the raw output's shape on one input of the fed shape, and
	// Min and Max its values.
	Output   string
	Min, Max float32
	// Labels counts voxels per segment label on the synthetic volume, and
	// VolumeML their volumes.
	Labels   map[int]int
	VolumeML map[int]float64
	// Preprocess, Inference and Postprocess are the stages' times.
	Preprocess, Inference, Postprocess time.Duration
	// Notes are what the person should look at: a sigmoid model whose
	// output is not probabilities, a segment never produced, and the like.
	Notes []string
}

// Synthetic is the volume a check feeds: an axial 1 mm grid of cols × rows
// × depth voxels holding an ellipsoid "head" (300) around an ellipsoid
// "brain" (700) with a brighter core (1000), in air (0): enough structure
// for normalisation, cropping and thresholds to do something.
func Synthetic(cols, rows, depth int) *volume.Volume {
	v := &volume.Volume{
		Geometry: volume.Geometry{Cols: cols, Rows: rows, Depth: depth, Spacing: [3]float64{1, 1, 1},
			Direction: [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}},
		Data:     make([]float32, cols*rows*depth),
		Modality: "MR",
	}
	for k := range depth {
		for j := range rows {
			for i := range cols {
				x := (float64(i)+0.5)/float64(cols)*2 - 1
				y := (float64(j)+0.5)/float64(rows)*2 - 1
				z := (float64(k)+0.5)/float64(depth)*2 - 1
				r := x*x/0.81 + y*y/0.81 + z*z/0.81
				val := float32(0)
				switch {
				case r < 0.15:
					val = 1000
				case r < 0.55:
					val = 700
				case r < 1:
					val = 300
				}
				v.Data[i+cols*(j+rows*k)] = val
			}
		}
	}
	for k := range depth {
		v.Slices = append(v.Slices, volume.Slice{Position: [3]float64{0, 0, float64(k)}})
	}
	return v
}

// Run checks m: it builds a synthetic volume whose size suits the graph's
// fixed input sizes, segments it as a series would be, and runs the graph
// once on a tensor of the shape it was fed to show its raw output.
func Run(ctx context.Context, rt Runner, m *model.Model) (*Report, error) {
	in, out, err := graphIO(m)
	if err != nil {
		return nil, err
	}
	cols, rows, depth := 128, 128, 96
	if g := m.Preprocess.Geometry; m.Input.Mode == model.InputSlices && g.Orientation == "" && g.Spacing == nil && g.Conform == nil && g.Crop == nil {
		// Without geometry preprocessing a slice reaches the network at the
		// series' own size, which must be the graph's where it is fixed.
		if d := in.Shape; len(d) == 4 && d[2].IsFixed() && d[3].IsFixed() {
			rows, cols = int(d[2].Value), int(d[3].Value)
		}
	}
	v := Synthetic(cols, rows, depth)
	rep := &Report{Volume: [3]int{cols, rows, depth}, Spacing: 1}
	res, err := rt.SegmentWith(ctx, m, v, inference.SegmentOptions{Progress: func(p inference.Progress) {
		if p.Total > 0 {
			rep.Runs = p.Total
		}
	}})
	if err != nil {
		return rep, err
	}
	rep.ModelShape = res.ModelShape
	rep.Preprocess, rep.Inference, rep.Postprocess = res.Preprocess, res.Inference, res.Postprocess
	rep.Labels = map[int]int{}
	for _, l := range res.Labels {
		if l > 0 {
			rep.Labels[int(l)]++
		}
	}
	rep.VolumeML = pipeline.VolumesML(v, res.Labels)

	shape := fedShape(m, in, res.ModelShape)
	rep.Fed = shapeString(shape)
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	probe := make([]float32, n)
	for i := range probe {
		probe[i] = float32(i%101) / 100 // a ramp of 0..1
	}
	raw, err := rt.RunFile(ctx, m.ONNXPath, m.Input.Name, m.Output.Name, inference.Tensor{Shape: shape, Data: probe})
	if err != nil {
		return rep, fmt.Errorf("run the graph on a %s tensor: %w", rep.Fed, err)
	}
	rep.Output = shapeString(raw.Shape)
	rep.Min, rep.Max = float32(math.Inf(1)), float32(math.Inf(-1))
	for _, x := range raw.Data {
		rep.Min, rep.Max = min(rep.Min, x), max(rep.Max, x)
	}
	rep.notes(m, out)
	return rep, nil
}

// graphIO reads the graph's declared input and output the manifest names.
func graphIO(m *model.Model) (in, out onnx.ValueInfo, err error) {
	b, err := os.ReadFile(m.ONNXPath)
	if err != nil {
		return in, out, err
	}
	g, err := onnx.Decode(b)
	if err != nil {
		return in, out, fmt.Errorf("%s: %w", m.ONNXPath, err)
	}
	var inOK, outOK bool
	for _, v := range g.Graph.DataInputs() {
		if v.Name == m.Input.Name {
			in, inOK = v, true
		}
	}
	for _, v := range g.Graph.Outputs {
		if v.Name == m.Output.Name {
			out, outOK = v, true
		}
	}
	switch {
	case !inOK:
		return in, out, fmt.Errorf("the graph has no input %q (manifest input.name)", m.Input.Name)
	case !outOK:
		return in, out, fmt.Errorf("the graph has no output %q (manifest output.name)", m.Output.Name)
	}
	return in, out, nil
}

// fedShape is the shape of one input the model was fed: [1, 1, D, H, W]
// in volume mode, a batch of slices [N, C, H, W], or a window's patch.
func fedShape(m *model.Model, in onnx.ValueInfo, s [3]int) []int64 {
	d, h, w := int64(s[0]), int64(s[1]), int64(s[2])
	switch m.Input.Mode {
	case model.InputSlices:
		n := min(int64(m.Input.BatchSize), d)
		if len(in.Shape) == 4 && in.Shape[0].IsFixed() {
			n = in.Shape[0].Value
		}
		return []int64{n, int64(m.Input.Channels), h, w}
	case model.InputWindow:
		p := m.Input.PatchSize
		return []int64{1, 1, int64(p[0]), int64(p[1]), int64(p[2])}
	}
	return []int64{1, 1, d, h, w}
}

func (r *Report) notes(m *model.Model, out onnx.ValueInfo) {
	switch m.Output.Activation {
	case model.ActivationSigmoid:
		if r.Min < 0 || r.Max > 1 {
			r.Notes = append(r.Notes, fmt.Sprintf("the output is not probabilities (values %.3g to %.3g) but the manifest says sigmoid: if the network has no final sigmoid, use activation none with threshold 0 (the same decision on logits)", r.Min, r.Max))
		}
	case model.ActivationSoftmax:
		if r.Min >= 0 && r.Max <= 1 {
			r.Notes = append(r.Notes, "the output looks like probabilities already; softmax (argmax) reads them the same")
		}
	}
	if len(out.Shape) > 1 && out.Shape[1].IsFixed() {
		if want := m.OutputChannels(); want > 0 && int64(want) != out.Shape[1].Value {
			r.Notes = append(r.Notes, fmt.Sprintf("the graph declares %d output channels, the manifest reads %d", out.Shape[1].Value, want))
		}
	}
	var missing []string
	for _, s := range m.Segments() {
		if r.Labels[s.Label] == 0 {
			missing = append(missing, fmt.Sprint(s.Label))
		}
	}
	if n := len(missing); n > 0 {
		if n > 12 {
			missing = append(missing[:12], "...")
		}
		r.Notes = append(r.Notes, fmt.Sprintf("%d of %d segments (labels %s) are not on the synthetic volume, as may be for a model trained on real anatomy",
			n, len(m.Segments()), strings.Join(missing, ", ")))
	}
}

// Write prints the report for a person.
func (r *Report) Write(m *model.Model) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  synthetic volume: %d x %d x %d voxels of %g mm, an ellipsoid head in air\n", r.Volume[0], r.Volume[1], r.Volume[2], r.Spacing)
	fmt.Fprintf(&b, "  fed: %d x %s to input %q (%s mode; the model saw [D, H, W] = %v)\n", r.Runs, r.Fed, m.Input.Name, m.Input.Mode, r.ModelShape)
	fmt.Fprintf(&b, "  got: output %q %s on one such input, values %.4g to %.4g; read as %s\n", m.Output.Name, r.Output, r.Min, r.Max, decision(m))
	for _, s := range m.Segments() {
		if n := r.Labels[s.Label]; n > 0 {
			fmt.Fprintf(&b, "  label %d %s: %d voxels, %.1f mL\n", s.Label, s.Name, n, r.VolumeML[s.Label])
		}
	}
	fmt.Fprintf(&b, "  time: preprocess %d ms, inference %d ms, postprocess %d ms\n",
		r.Preprocess.Milliseconds(), r.Inference.Milliseconds(), r.Postprocess.Milliseconds())
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}

func decision(m *model.Model) string {
	switch m.Output.Activation {
	case model.ActivationSigmoid:
		return fmt.Sprintf("probabilities, label where >= %g", m.Output.ThresholdOrDefault())
	case model.ActivationSoftmax:
		return "class scores, label = argmax"
	}
	return fmt.Sprintf("raw values (one channel: label where >= %g; several: argmax)", m.Output.ThresholdOrDefault())
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
