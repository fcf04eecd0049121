package inference

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/segbridge/segbridge/internal/checked"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/parallel"
	"github.com/segbridge/segbridge/internal/preprocess"
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
	// Inference includes creating the input tensors but not loading the
	// model; Postprocess includes deciding labels from the output.
	Preprocess, Inference, Postprocess time.Duration
	// Steps are the finer steps in the order they ran (geometry,
	// intensity, crop, inference, labels, components, map back), for
	// people reading timings.
	Steps []Step
	// ModelShape is the [D, H, W] the model was run on (after geometry and
	// crop).
	ModelShape [3]int
}

// Step is one timed step of a segmentation.
type Step struct {
	Name     string
	Duration time.Duration
}

// Progress is reported to SegmentOptions.Progress.
type Progress struct {
	// Stage is preprocess, inference or postprocess.
	Stage string
	// Done of Total runs of the model (slices batches or windows) are
	// finished; Total is 1 in volume mode and 0 outside inference.
	Done, Total int
}

// SegmentOptions are the optional parts of a segmentation.
type SegmentOptions struct {
	// Progress, when set, is called from Segment's goroutine when a stage
	// starts and after every run of the model.
	Progress func(Progress)
	// ReuseVoxels lets the segmentation overwrite the volume's voxels: a
	// model that runs on the series' own grid then gets them normalised in
	// place instead of in a copy, a volume's memory and its page faults
	// less (420 MB for 400 slices of 512x512). The caller must not read
	// v.Data afterwards. Default false: v is not modified.
	ReuseVoxels bool
}

// Segment runs m on v and returns a label for every voxel of v. v is not
// modified. Cancelling ctx stops a running inference.
func (r *Runtime) Segment(ctx context.Context, m *model.Model, v *volume.Volume) (*Result, error) {
	return r.SegmentWith(ctx, m, v, SegmentOptions{})
}

// SegmentWith is Segment with options; v is not modified unless
// opts.ReuseVoxels says it may be.
func (r *Runtime) SegmentWith(ctx context.Context, m *model.Model, v *volume.Volume, opts SegmentOptions) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	r.life.RLock()
	defer r.life.RUnlock()
	if r.closed {
		return nil, errors.New("runtime is closed")
	}
	if _, err := checkVolume(v); err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(Progress) {}
	}
	res := &Result{}
	step := func(name string, start time.Time) time.Duration {
		d := time.Since(start)
		res.Steps = append(res.Steps, Step{name, d})
		return d
	}

	progress(Progress{Stage: "preprocess"})
	t0 := time.Now()
	in, err := prepare(m, v, opts.ReuseVoxels, step)
	if err != nil {
		return nil, fmt.Errorf("model %s: preprocess: %w", m.Name, err)
	}
	res.Preprocess = time.Since(t0)
	res.ModelShape = [3]int{in.box.Dims()[2], in.box.Dims()[1], in.box.Dims()[0]}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}

	sess, err := r.session(m)
	if err != nil {
		return nil, err
	}

	// Each mode reports the start of inference itself, with its number of
	// runs: a report here too would be one more round trip to the queue.
	t0 = time.Now()
	var labels []uint8
	var decideTime time.Duration
	switch m.Input.Mode {
	case model.InputVolume:
		labels, decideTime, err = r.runVolume(ctx, m, sess, in.data, in.box.Dims(), progress)
	case model.InputSlices:
		labels, decideTime, err = r.runSlices(ctx, m, sess, in.data, in.box.Dims(), progress)
	case model.InputWindow:
		labels, decideTime, err = r.runWindow(ctx, m, sess, in.data, in.box.Dims(), progress)
	default:
		err = fmt.Errorf("input mode %q is not supported: %w", m.Input.Mode, ErrModelMismatch)
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "model ") {
			return nil, err
		}
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	in.data = nil // the input is no longer needed; let it go before postprocessing
	res.Inference = time.Since(t0) - decideTime
	res.Steps = append(res.Steps, Step{"inference", res.Inference}, Step{"labels", decideTime})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}

	progress(Progress{Stage: "postprocess"})
	t0 = time.Now()
	res.Labels, err = finish(m, in, labels, step)
	if err != nil {
		return nil, fmt.Errorf("model %s: postprocess: %w", m.Name, err)
	}
	res.Postprocess = time.Since(t0) + decideTime

	r.logger.Debug().Str("model", m.Name).Str("device", r.Device()).
		Ints("shape", []int{v.Depth, v.Rows, v.Cols}).Ints("model_shape", res.ModelShape[:]).
		Dur("preprocess", res.Preprocess).Dur("inference", res.Inference).Dur("postprocess", res.Postprocess).
		Msg("segmented")
	return res, nil
}

// newRunOptions returns run options that terminate the run when ctx ends;
// the caller calls the returned release.
func (r *Runtime) newRunOptions(ctx context.Context) (*ort.RunOptions, func(), error) {
	runOpts, err := ort.NewRunOptions()
	if err != nil {
		return nil, nil, fmt.Errorf("run options: %w", err)
	}
	stop := context.AfterFunc(ctx, func() {
		if err := runOpts.Terminate(); err != nil {
			r.logger.Warn().Err(err).Msg("cannot terminate the inference")
		}
	})
	return runOpts, func() { stop(); runOpts.Destroy() }, nil
}

// outputs lends output tensors by shape, allocated in Go before the run
// and reused by every run of the same shape. An output that ONNX Runtime
// allocates itself, onnxruntime_go copies into a new Go slice and frees:
// twice the output's memory at once (for a 104-class volume, 2.8 GB more)
// and a copy, for every run.
type outputs struct {
	// channels is the graph's fixed number of output channels; 0 leaves
	// allocation to ONNX Runtime.
	channels int64
	byShape  map[string]*ort.Tensor[float32]
}

func newOutputs(sess *session) *outputs {
	return &outputs{channels: sess.channels, byShape: map[string]*ort.Tensor[float32]{}}
}

// get returns the output tensor for an output of shape with the graph's
// channels in place of shape[1], or nil when the channels are not fixed.
func (o *outputs) get(shape ort.Shape) (*ort.Tensor[float32], error) {
	if o.channels <= 0 {
		return nil, nil
	}
	shape = shape.Clone()
	shape[1] = o.channels
	if n, ok := checked.Mul(int(shape.FlattenedSize()), 1); !ok || n <= 0 {
		return nil, nil
	}
	key := shape.String()
	if t, ok := o.byShape[key]; ok {
		return t, nil
	}
	t, err := ort.NewEmptyTensor[float32](shape)
	if err != nil {
		return nil, fmt.Errorf("output tensor: %w", err)
	}
	o.byShape[key] = t
	return t, nil
}

func (o *outputs) destroy() {
	for k, t := range o.byShape {
		t.Destroy()
		delete(o.byShape, k)
	}
}

// runOnce feeds one input tensor and returns the output, into out when it
// is given. Should a run into out fail (the graph's output is not the shape
// expected of it), the run is repeated with ONNX Runtime allocating the
// output, so that its shape can be checked and reported against the
// manifest. owned says whether the caller must destroy the output.
// Cancelling ctx terminates the run.
func runOnce(ctx context.Context, sess *session, runOpts *ort.RunOptions, in ort.Value, out *ort.Tensor[float32]) (v ort.Value, owned bool, err error) {
	if out != nil {
		outs := []ort.Value{out}
		err := sess.s.RunWithOptions([]ort.Value{in}, outs, runOpts)
		if err == nil {
			return out, false, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, false, fmt.Errorf("run: %w", ctxErr)
		}
	}
	outs := []ort.Value{nil}
	if err := sess.s.RunWithOptions([]ort.Value{in}, outs, runOpts); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, false, fmt.Errorf("run: %w", ctxErr)
		}
		return nil, false, fmt.Errorf("run: %w", err)
	}
	return outs[0], true, nil
}

// runTensor feeds data as one input tensor of shape, runs the model and
// hands the output's values and shape, with a reporter of shape mismatches,
// to use. The output is written into a tensor from outs when the graph's
// channels are fixed (outShape, with any channel count). It returns how
// long use took (the labelling time).
func runTensor(ctx context.Context, m *model.Model, sess *session, runOpts *ort.RunOptions, shape ort.Shape, data []float32,
	outs *outputs, outShape ort.Shape,
	use func(od []float32, shape ort.Shape, mismatch func(string, ...any) error) error) (time.Duration, error) {
	in, err := ort.NewTensor(shape, data)
	if err != nil {
		return 0, fmt.Errorf("input tensor: %w", err)
	}
	defer in.Destroy()
	into, err := outs.get(outShape)
	if err != nil {
		return 0, err
	}
	out, owned, err := runOnce(ctx, sess, runOpts, in, into)
	if err != nil {
		return 0, err
	}
	if owned {
		defer out.Destroy()
	}
	t0 := time.Now()
	t, oshape, err := floatOutput(m, out)
	if err != nil {
		return time.Since(t0), err
	}
	err = use(t.GetData(), oshape, shapeMismatch(m, oshape))
	return time.Since(t0), err
}

// runVolume feeds data ([D, H, W] = dims reversed) as [1, 1, D, H, W] and
// decides the labels from the [1, C, D, H, W] output.
func (r *Runtime) runVolume(ctx context.Context, m *model.Model, sess *session, data []float32, dims [3]int, progress func(Progress)) ([]uint8, time.Duration, error) {
	if sess.cut != nil {
		return r.runVolumeCut(ctx, m, sess, data, dims, progress)
	}
	progress(Progress{Stage: "inference", Total: 1})
	shape := ort.NewShape(1, 1, int64(dims[2]), int64(dims[1]), int64(dims[0]))
	runOpts, release, err := r.newRunOptions(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer release()
	outs := newOutputs(sess)
	defer outs.destroy()
	var labels []uint8
	took, err := runTensor(ctx, m, sess, runOpts, shape, data, outs, shape, func(od []float32, oshape ort.Shape, mismatch func(string, ...any) error) error {
		progress(Progress{Stage: "inference", Done: 1, Total: 1})
		var err error
		labels, err = volumeLabels(m, od, oshape, mismatch, dims)
		return err
	})
	return labels, took, err
}

// volumeLabels checks a [1, C, D, H, W] output against the input's dims and
// the manifest and decides one label per voxel.
func volumeLabels(m *model.Model, data []float32, shape ort.Shape, mismatch func(string, ...any) error, dims [3]int) ([]uint8, error) {
	if len(shape) != 5 || shape[0] != 1 {
		return nil, mismatch("segbridge needs [1, C, D, H, W]")
	}
	if shape[2] != int64(dims[2]) || shape[3] != int64(dims[1]) || shape[4] != int64(dims[0]) {
		return nil, mismatch("the input was %s", shapeString(ort.NewShape(1, 1, int64(dims[2]), int64(dims[1]), int64(dims[0]))))
	}
	n := dims[0] * dims[1] * dims[2] // a checked grid's
	d, err := newDecider(m, int(shape[1]), mismatch)
	if err != nil {
		return nil, err
	}
	if want, ok := checked.Mul(d.channels, n); !ok || len(data) != want {
		return nil, mismatch("it holds %d values", len(data))
	}
	labels := make([]uint8, n)
	d.decide(data, n, n, labels)
	return labels, nil
}

func floatOutput(m *model.Model, out ort.Value) (*ort.Tensor[float32], ort.Shape, error) {
	t, ok := out.(*ort.Tensor[float32])
	if !ok {
		return nil, nil, fmt.Errorf("model %s: output %q is a %s of %s, want a float32 tensor: %w",
			m.Name, m.Output.Name, out.GetONNXType(), ort.TensorElementDataType(out.DataType()), ErrModelMismatch)
	}
	return t, out.GetShape(), nil
}

func shapeMismatch(m *model.Model, shape ort.Shape) func(format string, args ...any) error {
	return func(format string, args ...any) error {
		return fmt.Errorf("model %s: output %q has shape %s but %s: %w",
			m.Name, m.Output.Name, shapeString(shape), fmt.Sprintf(format, args...), ErrModelMismatch)
	}
}

// decider turns per-voxel channel values into labels as the manifest says.
type decider struct {
	channels    int
	thresholded bool
	threshold   float32
	// label[c] is the label of channel c (0 for background or undescribed).
	label []uint8
}

// newDecider checks that an output with the given number of channels fits
// the manifest and returns how to read it.
func newDecider(m *model.Model, channels int, mismatch func(string, ...any) error) (*decider, error) {
	act := m.Output.Activation
	maxClass := m.MaxClass()
	what := "labels"
	if m.Output.Remap != nil {
		what = "classes"
	}
	offset := 0 // class of channel c is c + offset
	switch want := m.OutputChannels(); {
	case channels < 1:
		return nil, mismatch("it has no channels")
	case m.Output.Channels > 0 && channels != want:
		return nil, mismatch("the manifest's output.channels is %d", want)
	case act == model.ActivationSigmoid:
		if channels != want {
			return nil, mismatch("the manifest's sigmoid activation needs %s (one per %s 1..%d)", plural(want, "channel"), strings.TrimSuffix(what, "s"), maxClass)
		}
		offset = 1
	case act == model.ActivationSoftmax || (act == model.ActivationNone && channels > 1):
		if m.Output.Channels == 0 && channels != maxClass+1 {
			return nil, mismatch("the manifest's %s activation needs %s (background and %s 1..%d)", act, plural(maxClass+1, "channel"), what, maxClass)
		}
	case act == model.ActivationNone:
		if maxClass != 1 {
			return nil, mismatch("the manifest's none activation with one channel gives label 1 only, and its segments go up to %s %d", strings.TrimSuffix(what, "s"), maxClass)
		}
		offset = 1 // one channel: class 1 where it reaches the threshold
	default:
		return nil, fmt.Errorf("model %s: activation %q: %w", m.Name, act, ErrModelMismatch)
	}
	// Labels without a segment are written as background, so that the SEG
	// never holds a label it does not describe.
	var described [256]bool
	for _, s := range m.Manifest.Segments {
		described[s.Label] = true
	}
	d := &decider{
		channels:    channels,
		thresholded: act != model.ActivationSoftmax && offset == 1,
		threshold:   float32(m.Output.ThresholdOrDefault()),
		label:       make([]uint8, channels),
	}
	for c := range channels {
		if l := m.LabelOf(c + offset); l > 0 && l < 256 && described[l] {
			d.label[c] = uint8(l)
		}
	}
	return d, nil
}

// decide labels n voxels whose channel c value of voxel p is
// data[c*stride+p], into out[:n].
func (d *decider) decide(data []float32, n, stride int, out []uint8) {
	decideRange := func(lo, hi int) {
		for p := lo; p < hi; p++ {
			best, bestC := data[p], 0
			for c := 1; c < d.channels; c++ {
				if x := data[c*stride+p]; x > best {
					best, bestC = x, c
				}
			}
			if d.thresholded && !(best >= d.threshold) {
				out[p] = 0
				continue
			}
			out[p] = d.label[bestC]
		}
	}
	if d.channels > 8 {
		decideRange = d.decideChunks(data, stride, out)
	}
	if n < 1<<16 {
		decideRange(0, n)
		return
	}
	parallel.Range(n, decideRange)
}

// decideChunks returns decide's work for many channels: channel by channel
// over a chunk of voxels rather than voxel by voxel, since a hundred
// channels read at once are a hundred streams that defeat the caches. Each
// voxel still compares its channels in order, so ties and NaNs come out
// as voxel by voxel.
func (d *decider) decideChunks(data []float32, stride int, out []uint8) func(lo, hi int) {
	const chunk = 2048
	return func(lo, hi int) {
		var best [chunk]float32
		var bestC [chunk]int32
		for a := lo; a < hi; a += chunk {
			m := min(chunk, hi-a)
			copy(best[:m], data[a:a+m])
			clear(bestC[:m])
			for c := 1; c < d.channels; c++ {
				row := data[c*stride+a:][:m]
				for i, x := range row {
					if x > best[i] {
						best[i], bestC[i] = x, int32(c)
					}
				}
			}
			o := out[a : a+m]
			for i := range o {
				if d.thresholded && !(best[i] >= d.threshold) {
					o[i] = 0
					continue
				}
				o[i] = d.label[bestC[i]]
			}
		}
	}
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
	n, ok := checked.Mul(v.Cols, v.Rows, v.Depth)
	if !ok || len(v.Data) != n {
		return 0, fmt.Errorf("volume of %dx%dx%d voxels has %d values", v.Cols, v.Rows, v.Depth, len(v.Data))
	}
	return n, nil
}

// normaliseInto writes src normalised as the manifest says into dst, which
// is as long as src and may be src itself.
func normaliseInto(dst, src []float32, in model.Intensity) {
	switch in.Method {
	case model.IntensityNone:
		copy(dst, src)
	case model.IntensityFixed:
		preprocess.WindowInto(dst, src, *in.Min, *in.Max, true)
	case model.IntensityMinMax, "":
		lo, hi := preprocess.Range(src)
		preprocess.WindowInto(dst, src, lo, hi, false)
	default:
		copy(dst, src)
		normalise(dst, in)
	}
}

// normalise applies the manifest's intensity normalisation to data in place.
func normalise(data []float32, in model.Intensity) {
	switch in.Method {
	case model.IntensityNone:
	case model.IntensityFixed:
		preprocess.Window(data, *in.Min, *in.Max, true)
	case model.IntensityPercentile:
		preprocess.Percentile(data, *in.Lower, *in.Upper, in.Clip)
	case model.IntensityZScore:
		preprocess.ZScore(data, in.Foreground)
	case model.IntensityRobust255:
		upper := 99.9
		if in.Upper != nil {
			upper = *in.Upper
		}
		lo, hi := preprocess.RobustRange(data, upper)
		preprocess.Scale255(data, lo, hi)
	default: // minmax, the default
		preprocess.MinMax(data)
	}
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
