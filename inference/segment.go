package inference

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
)

// ErrModelMismatch is wrapped by errors that say a model does not fit its
// manifest or its input: missing input or output names, wrong element types,
// an output shape that the manifest's activation and segments cannot read.
// Such an error is permanent: running the job again will not help.
var ErrModelMismatch = errors.New("model does not fit its manifest")

// Result is a segmentation on the input volume's grid.
type Result struct {
	// Labels holds one label per voxel of the input volume, voxel (i, j, k) at
	// i + Cols*(j + Rows*k); 0 is background, other values are the manifest's
	// segment labels.
	Labels []uint8
	// Preprocess, Inference and Postprocess are how long each stage took.
	// Inference includes creating the input tensor but not loading the model.
	Preprocess, Inference, Postprocess time.Duration
}

// Segment runs m on v and returns a label for every voxel of v. v is not
// modified. Cancelling ctx stops a running inference.
func (r *Runtime) Segment(ctx context.Context, m *model.Model, v *volume.Volume) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	r.life.RLock()
	defer r.life.RUnlock()
	if r.closed {
		return nil, errors.New("runtime is closed")
	}
	if m.Input.Mode != model.InputVolume {
		return nil, fmt.Errorf("model %s: input mode %q is not supported: %w", m.Name, m.Input.Mode, ErrModelMismatch)
	}
	n, err := checkVolume(v)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	res := &Result{}

	t0 := time.Now()
	input := normalise(v.Data, m.Preprocess.Intensity)
	res.Preprocess = time.Since(t0)

	sess, err := r.session(m)
	if err != nil {
		return nil, err
	}

	t0 = time.Now()
	out, err := r.run(ctx, sess, input, v)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	defer out.Destroy()
	res.Inference = time.Since(t0)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}

	t0 = time.Now()
	res.Labels, err = labels(m, out, v, n)
	if err != nil {
		return nil, err
	}
	res.Postprocess = time.Since(t0)

	r.logger.Debug().Str("model", m.Name).Str("device", r.Device()).
		Ints("shape", []int{v.Depth, v.Rows, v.Cols}).
		Dur("preprocess", res.Preprocess).Dur("inference", res.Inference).Dur("postprocess", res.Postprocess).
		Msg("segmented")
	return res, nil
}

// run feeds input as [1, 1, Depth, Rows, Cols] and returns the output, which
// the caller destroys. Cancelling ctx terminates the run.
func (r *Runtime) run(ctx context.Context, sess *session, input []float32, v *volume.Volume) (ort.Value, error) {
	in, err := ort.NewTensor(ort.NewShape(1, 1, int64(v.Depth), int64(v.Rows), int64(v.Cols)), input)
	if err != nil {
		return nil, fmt.Errorf("input tensor: %w", err)
	}
	defer in.Destroy()

	runOpts, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("run options: %w", err)
	}
	defer runOpts.Destroy()
	stop := context.AfterFunc(ctx, func() {
		if err := runOpts.Terminate(); err != nil {
			r.logger.Warn().Err(err).Msg("cannot terminate the inference")
		}
	})
	defer stop()

	outs := []ort.Value{nil}
	if err := sess.s.RunWithOptions([]ort.Value{in}, outs, runOpts); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("run: %w", ctxErr)
		}
		return nil, fmt.Errorf("run: %w", err)
	}
	return outs[0], nil
}

// checkVolume returns the number of voxels, or an error if v is not a
// consistent non-empty volume.
func checkVolume(v *volume.Volume) (int, error) {
	if v == nil {
		return 0, errors.New("no volume")
	}
	if v.Cols <= 0 || v.Rows <= 0 || v.Depth <= 0 {
		return 0, fmt.Errorf("volume has size %dx%dx%d", v.Cols, v.Rows, v.Depth)
	}
	n := v.Cols * v.Rows * v.Depth
	if len(v.Data) != n {
		return 0, fmt.Errorf("volume of %dx%dx%d voxels has %d values", v.Cols, v.Rows, v.Depth, len(v.Data))
	}
	return n, nil
}

// normalise returns data with the manifest's intensity normalisation applied,
// in a new slice (or data itself for method none, which ONNX Runtime only
// reads).
func normalise(data []float32, in model.Intensity) []float32 {
	var lo, hi float64
	switch in.Method {
	case model.IntensityNone:
		return data
	case model.IntensityFixed:
		lo, hi = *in.Min, *in.Max
	default: // minmax, the default
		lo, hi = math.Inf(1), math.Inf(-1)
		for _, x := range data {
			lo = min(lo, float64(x))
			hi = max(hi, float64(x))
		}
	}
	out := make([]float32, len(data))
	if !(hi > lo) { // constant volume (or only NaNs): all 0
		return out
	}
	scale := 1 / (hi - lo)
	clip := in.Method == model.IntensityFixed
	for i, x := range data {
		y := (float64(x) - lo) * scale
		if clip {
			y = min(max(y, 0), 1)
		}
		out[i] = float32(y)
	}
	return out
}

// labels turns the output [1, C, D, H, W] into one label per voxel as the
// manifest's activation says, after checking that the output fits.
func labels(m *model.Model, out ort.Value, v *volume.Volume, n int) ([]uint8, error) {
	shape := out.GetShape()
	mismatch := func(format string, args ...any) error {
		return fmt.Errorf("model %s: output %q has shape %s but %s: %w",
			m.Name, m.Output.Name, shapeString(shape), fmt.Sprintf(format, args...), ErrModelMismatch)
	}
	t, ok := out.(*ort.Tensor[float32])
	if !ok {
		return nil, fmt.Errorf("model %s: output %q is a %s of %s, want a float32 tensor: %w",
			m.Name, m.Output.Name, out.GetONNXType(), ort.TensorElementDataType(out.DataType()), ErrModelMismatch)
	}
	if len(shape) != 5 || shape[0] != 1 {
		return nil, mismatch("segbridge needs [1, C, D, H, W]")
	}
	if shape[2] != int64(v.Depth) || shape[3] != int64(v.Rows) || shape[4] != int64(v.Cols) {
		return nil, mismatch("the input was %s", shapeString(ort.NewShape(1, 1, int64(v.Depth), int64(v.Rows), int64(v.Cols))))
	}
	channels := int(shape[1])
	maxLabel := m.MaxLabel()
	act := m.Output.Activation
	threshold := float32(m.Output.ThresholdOrDefault())
	var argmaxOffset int // label of channel c under argmax is c + offset
	switch {
	case act == model.ActivationSigmoid:
		if channels != maxLabel {
			return nil, mismatch("the manifest's sigmoid activation needs %s (one per label 1..%d)", plural(maxLabel, "channel"), maxLabel)
		}
		argmaxOffset = 1
	case act == model.ActivationSoftmax || (act == model.ActivationNone && channels > 1):
		if channels != maxLabel+1 {
			return nil, mismatch("the manifest's %s activation needs %s (background and labels 1..%d)", act, plural(maxLabel+1, "channel"), maxLabel)
		}
	case act == model.ActivationNone:
		if maxLabel != 1 {
			return nil, mismatch("the manifest's none activation with one channel gives label 1 only, and its segments go up to label %d", maxLabel)
		}
		argmaxOffset = 1 // one channel: label 1 where it reaches the threshold
	default:
		return nil, fmt.Errorf("model %s: activation %q: %w", m.Name, act, ErrModelMismatch)
	}
	data := t.GetData()
	if len(data) != channels*n {
		return nil, mismatch("it holds %d values", len(data))
	}

	// Labels without a segment are written as background, so that the SEG
	// never holds a label it does not describe.
	var described [256]bool
	for _, s := range m.Manifest.Segments {
		described[s.Label] = true
	}
	thresholded := act != model.ActivationSoftmax && argmaxOffset == 1
	labels := make([]uint8, n)
	for i := range n {
		best, bestC := data[i], 0
		for c := 1; c < channels; c++ {
			if x := data[c*n+i]; x > best {
				best, bestC = x, c
			}
		}
		if thresholded && !(best >= threshold) {
			continue
		}
		if l := bestC + argmaxOffset; described[l] {
			labels[i] = uint8(l)
		}
	}
	return labels, nil
}

// shapeString writes a shape as [1,3,20,30,40].
func shapeString(s ort.Shape) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
