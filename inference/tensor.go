package inference

import (
	"context"
	"errors"
	"fmt"
	"slices"

	ort "github.com/yalue/onnxruntime_go"
)

// Tensor is a float32 tensor: its shape and values in row-major order.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// RunFile runs the ONNX file at path once on one float32 input and returns
// the named output as it is, with no manifest, preprocessing or labels: for
// comparing converted models with their references and for showing what a
// model gives (`segbridge models check`). The session lives only for this
// call. Cancelling ctx stops the run.
func (r *Runtime) RunFile(ctx context.Context, path, input, output string, in Tensor) (*Tensor, error) {
	r.life.RLock()
	defer r.life.RUnlock()
	if r.closed {
		return nil, errors.New("runtime is closed")
	}
	opts, err := r.sessionOptions(r.Device() == DeviceCUDA)
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	s, err := ort.NewDynamicAdvancedSession(path, []string{input}, []string{output}, opts)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer s.Destroy()
	t, err := ort.NewTensor(ort.NewShape(in.Shape...), in.Data)
	if err != nil {
		return nil, fmt.Errorf("input tensor %v: %w", in.Shape, err)
	}
	defer t.Destroy()
	runOpts, release, err := r.newRunOptions(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	outs := []ort.Value{nil}
	if err := s.RunWithOptions([]ort.Value{t}, outs, runOpts); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("run %s: %w", path, ctxErr)
		}
		return nil, fmt.Errorf("run %s: %w", path, err)
	}
	defer outs[0].Destroy()
	ft, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, fmt.Errorf("output %q of %s is not a float32 tensor", output, path)
	}
	return &Tensor{Shape: slices.Clone([]int64(ft.GetShape())), Data: slices.Clone(ft.GetData())}, nil
}
