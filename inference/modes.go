package inference

import (
	"context"
	"fmt"
	"math"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/segbridge/segbridge/internal/checked"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/preprocess"
)

// runSlices feeds the slices along D of data (dims = [W, H, D]) in batches
// of [N, C, H, W] and decides each slice's labels from the [N, K, H, W]
// output as it comes, so that only one batch's output is held at a time.
func (r *Runtime) runSlices(ctx context.Context, m *model.Model, sess *session, data []float32, dims [3]int, progress func(Progress)) ([]uint8, time.Duration, error) {
	w, h, d := dims[0], dims[1], dims[2]
	hw := w * h
	channels := m.Input.Channels
	batch, fixed := m.Input.BatchSize, false
	if sess.batch > 0 { // the graph has a fixed batch size: feed full batches
		batch, fixed = int(sess.batch), true
	}
	total := (d + batch - 1) / batch
	// The box is a checked grid, so hw*d fits; a batch size from the graph
	// or channels from the manifest times it may not.
	labels := make([]uint8, hw*d)
	bufLen, ok := checked.Mul(min(batch, d), channels, hw)
	if fixed {
		bufLen, ok = checked.Mul(batch, channels, hw)
	}
	if !ok || bufLen > preprocess.MaxGridVoxels {
		return nil, 0, fmt.Errorf("model %s: a batch of %d slices of %d channels of %dx%d pixels is more than the %d values an input may hold: %w",
			m.Name, batch, channels, w, h, preprocess.MaxGridVoxels, ErrModelMismatch)
	}
	buf := make([]float32, bufLen)
	runOpts, release, err := r.newRunOptions(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer release()

	outs := newOutputs(sess)
	defer outs.destroy()
	var dec *decider
	var decideTime time.Duration
	progress(Progress{Stage: "inference", Total: total})
	for b := range total {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		first, count := b*batch, min(batch, d-b*batch)
		feed := count
		if fixed {
			feed = batch
			clear(buf)
		}
		for s := range count {
			for c := range channels {
				src := first + s
				if m.Input.ChannelMode == model.ChannelsNeighbours {
					src = min(max(src+c-channels/2, 0), d-1)
				}
				copy(buf[(s*channels+c)*hw:][:hw], data[src*hw:][:hw])
			}
		}
		inShape := ort.NewShape(int64(feed), int64(channels), int64(h), int64(w))
		took, err := runTensor(ctx, m, sess, runOpts, inShape, buf[:feed*channels*hw], outs, inShape,
			func(od []float32, shape ort.Shape, mismatch func(string, ...any) error) error {
				var err error
				if len(shape) != 4 {
					return mismatch("slice mode needs [N, K, H, W]")
				}
				if shape[0] != int64(feed) || shape[2] != int64(h) || shape[3] != int64(w) {
					return mismatch("the input was %s", shapeString(ort.NewShape(int64(feed), int64(channels), int64(h), int64(w))))
				}
				if dec == nil {
					if dec, err = newDecider(m, int(shape[1]), mismatch); err != nil {
						return err
					}
				}
				k := dec.channels
				if want, ok := checked.Mul(feed, k, hw); !ok || len(od) != want {
					return mismatch("it holds %d values", len(od))
				}
				for s := range count {
					dec.decide(od[s*k*hw:], hw, hw, labels[(first+s)*hw:])
				}
				return nil
			})
		decideTime += took
		if err != nil {
			return nil, 0, err
		}
		progress(Progress{Stage: "inference", Done: b + 1, Total: total})
	}
	return labels, decideTime, nil
}

// windowStarts returns the start of every patch along an axis of n voxels:
// evenly stepped by patch·(1−overlap), the last one flush with the end.
func windowStarts(n, patch int, overlap float64) []int {
	if n <= patch {
		return []int{0}
	}
	step := max(1, int(float64(patch)*(1-overlap)))
	var starts []int
	for s := 0; s+patch < n; s += step {
		starts = append(starts, s)
	}
	return append(starts, n-patch)
}

// windowWeights returns the blending weight of each voxel of a patch (grid
// axis 0 fastest).
func windowWeights(pg [3]int, blending model.Blending) []float32 {
	wts := make([]float32, pg[0]*pg[1]*pg[2])
	if blending == model.BlendConstant {
		for i := range wts {
			wts[i] = 1
		}
		return wts
	}
	var axis [3][]float64
	for t := range 3 {
		sigma := float64(pg[t]) / 8
		c := float64(pg[t]-1) / 2
		axis[t] = make([]float64, pg[t])
		for i := range pg[t] {
			x := (float64(i) - c) / sigma
			axis[t][i] = math.Exp(-x * x / 2)
		}
	}
	for k := range pg[2] {
		for j := range pg[1] {
			for i := range pg[0] {
				// Never 0, so that every voxel a patch covers gets a value.
				wts[i+pg[0]*(j+pg[1]*k)] = float32(max(axis[0][i]*axis[1][j]*axis[2][k], 1e-6))
			}
		}
	}
	return wts
}

// runWindow feeds patches of data (dims = [W, H, D]) as [1, 1, PD, PH, PW],
// blends the [1, K, PD, PH, PW] outputs into [K, D, H, W] with the
// manifest's weights and decides the labels from the blend.
func (r *Runtime) runWindow(ctx context.Context, m *model.Model, sess *session, data []float32, dims [3]int, progress func(Progress)) ([]uint8, time.Duration, error) {
	ps := m.Input.PatchSize
	pg := [3]int{ps[2], ps[1], ps[0]} // patch along grid axes 0, 1, 2
	var starts [3][]int
	for t := range 3 {
		starts[t] = windowStarts(dims[t], pg[t], *m.Input.Overlap)
	}
	total := len(starts[0]) * len(starts[1]) * len(starts[2])
	n := dims[0] * dims[1] * dims[2]
	pn := pg[0] * pg[1] * pg[2]
	wts := windowWeights(pg, m.Input.Blending)
	patch := make([]float32, pn)
	wsum := make([]float32, n)
	var acc []float32
	var dec *decider
	runOpts, release, err := r.newRunOptions(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer release()

	outs := newOutputs(sess)
	defer outs.destroy()
	var blendTime time.Duration
	done := 0
	progress(Progress{Stage: "inference", Total: total})
	for _, z := range starts[2] {
		for _, y := range starts[1] {
			for _, x := range starts[0] {
				if err := ctx.Err(); err != nil {
					return nil, 0, err
				}
				// Copy the patch, zero where it overhangs the volume.
				clear(patch)
				for k := range min(pg[2], dims[2]-z) {
					for j := range min(pg[1], dims[1]-y) {
						src := x + dims[0]*(y+j+dims[1]*(z+k))
						copy(patch[pg[0]*(j+pg[1]*k):][:min(pg[0], dims[0]-x)], data[src:])
					}
				}
				pshape := ort.NewShape(1, 1, int64(pg[2]), int64(pg[1]), int64(pg[0]))
				took, err := runTensor(ctx, m, sess, runOpts, pshape, patch, outs, pshape,
					func(od []float32, shape ort.Shape, mismatch func(string, ...any) error) error {
						var err error
						if len(shape) != 5 || shape[0] != 1 {
							return mismatch("window mode needs [1, K, D, H, W]")
						}
						if shape[2] != int64(pg[2]) || shape[3] != int64(pg[1]) || shape[4] != int64(pg[0]) {
							return mismatch("the patch was [1,1,%d,%d,%d]", pg[2], pg[1], pg[0])
						}
						if dec == nil {
							if dec, err = newDecider(m, int(shape[1]), mismatch); err != nil {
								return err
							}
						}
						// Checked before acc is allocated from the channel count.
						if want, ok := checked.Mul(dec.channels, pn); !ok || len(od) != want {
							return mismatch("it holds %d values", len(od))
						}
						if acc == nil {
							size, ok := checked.Mul(dec.channels, n)
							if !ok {
								return mismatch("%d channels of %d voxels are more values than can be addressed", dec.channels, n)
							}
							acc = make([]float32, size)
						}
						for k := range min(pg[2], dims[2]-z) {
							for j := range min(pg[1], dims[1]-y) {
								for i := range min(pg[0], dims[0]-x) {
									q := i + pg[0]*(j+pg[1]*k)
									p := x + i + dims[0]*(y+j+dims[1]*(z+k))
									w := wts[q]
									wsum[p] += w
									for c := range dec.channels {
										acc[c*n+p] += w * od[c*pn+q]
									}
								}
							}
						}
						return nil
					})
				blendTime += took
				if err != nil {
					return nil, 0, err
				}
				done++
				progress(Progress{Stage: "inference", Done: done, Total: total})
			}
		}
	}
	t0 := time.Now()
	for p, w := range wsum {
		if w > 0 {
			for c := range dec.channels {
				acc[c*n+p] /= w
			}
		}
	}
	labels := make([]uint8, n)
	dec.decide(acc, n, n, labels)
	return labels, blendTime + time.Since(t0), nil
}

// runVolumeCut is runVolume for a model cut before its 1x1x1 output layer
// (head.go): the body runs on the whole volume up to the hidden layer, then
// the output layer on slabs of it along D, each slab's labels decided
// before the next slab is run, so that the whole output never exists.
func (r *Runtime) runVolumeCut(ctx context.Context, m *model.Model, sess *session, data []float32, dims [3]int, progress func(Progress)) ([]uint8, time.Duration, error) {
	w, h, d := dims[0], dims[1], dims[2]
	hw, n := w*h, w*h*d // a checked grid's
	cut := sess.cut
	k, classes := int(cut.hiddenChannels), cut.classes
	outShape := ort.NewShape(1, classes, int64(d), int64(h), int64(w))
	mismatch := shapeMismatch(m, outShape)
	hiddenLen, ok := checked.Mul(k, n)
	if !ok || hiddenLen > preprocess.MaxGridVoxels {
		return nil, 0, fmt.Errorf("model %s: a hidden layer of %d channels of %d voxels is more values than an input may hold: %w",
			m.Name, k, n, ErrModelMismatch)
	}
	slabBytes := r.slabBytes
	if slabBytes <= 0 {
		slabBytes = defaultSlabBytes
	}
	slab := slabDepth(slabBytes, classes, d, h, w)
	slabs := (d + slab - 1) / slab
	progress(Progress{Stage: "inference", Total: 1 + slabs})
	runOpts, release, err := r.newRunOptions(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer release()

	inShape := ort.NewShape(1, 1, int64(d), int64(h), int64(w))
	in, err := ort.NewTensor(inShape, data)
	if err != nil {
		return nil, 0, fmt.Errorf("input tensor: %w", err)
	}
	hidden, err := ort.NewEmptyTensor[float32](ort.NewShape(1, int64(k), int64(d), int64(h), int64(w)))
	if err != nil {
		in.Destroy()
		return nil, 0, fmt.Errorf("hidden tensor: %w", err)
	}
	defer hidden.Destroy()
	_, _, err = runOnce(ctx, sess, runOpts, in, hidden)
	in.Destroy()
	if err != nil {
		// The whole graph would have given an output of the hidden
		// layer's size; say so in the manifest's terms where it is wrong.
		if got, ok := cutShapeError(ctx, sess, data, inShape); ok {
			got[1] = classes
			return nil, 0, shapeMismatch(m, got)("the input was %s", shapeString(inShape))
		}
		return nil, 0, err
	}
	progress(Progress{Stage: "inference", Done: 1, Total: 1 + slabs})

	dec, err := newDecider(m, int(classes), mismatch)
	if err != nil {
		return nil, 0, err
	}
	labels := make([]uint8, n)
	outs := &outputs{channels: classes, byShape: map[string]*ort.Tensor[float32]{}}
	defer outs.destroy()
	hd := hidden.GetData()
	part := make([]float32, k*min(slab, d)*hw)
	var decideTime time.Duration
	for b := range slabs {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		z0 := b * slab
		s := min(slab, d-z0)
		for c := range k {
			copy(part[c*s*hw:(c+1)*s*hw], hd[c*n+z0*hw:c*n+(z0+s)*hw])
		}
		slabShape := ort.NewShape(1, int64(k), int64(s), int64(h), int64(w))
		took, err := func() (time.Duration, error) {
			pin, err := ort.NewTensor(slabShape, part[:k*s*hw])
			if err != nil {
				return 0, fmt.Errorf("slab tensor: %w", err)
			}
			defer pin.Destroy()
			out, err := outs.get(slabShape)
			if err != nil {
				return 0, err
			}
			if err := sess.head.RunWithOptions([]ort.Value{pin}, []ort.Value{out}, runOpts); err != nil {
				if ctxErr := ctx.Err(); ctxErr != nil {
					return 0, fmt.Errorf("run output layer: %w", ctxErr)
				}
				return 0, fmt.Errorf("run output layer: %w", err)
			}
			t0 := time.Now()
			dec.decide(out.GetData(), s*hw, s*hw, labels[z0*hw:])
			return time.Since(t0), nil
		}()
		if err != nil {
			return nil, 0, err
		}
		decideTime += took
		progress(Progress{Stage: "inference", Done: 2 + b, Total: 1 + slabs})
	}
	return labels, decideTime, nil
}

// cutShapeError runs the body of a cut model again, letting ONNX Runtime
// allocate the hidden layer, and returns its shape when it is not the
// input's size (ok false when it is, or the run fails anyway).
func cutShapeError(ctx context.Context, sess *session, data []float32, inShape ort.Shape) (ort.Shape, bool) {
	in, err := ort.NewTensor(inShape, data)
	if err != nil {
		return nil, false
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if sess.s.Run([]ort.Value{in}, outs) != nil || ctx.Err() != nil {
		return nil, false
	}
	defer outs[0].Destroy()
	got := outs[0].GetShape()
	if len(got) == 5 && got[0] == 1 && got[2] == inShape[2] && got[3] == inShape[3] && got[4] == inShape[4] {
		return nil, false
	}
	return got, true
}
