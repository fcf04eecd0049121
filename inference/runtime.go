// Package inference is the worker side of segbridge: it runs segmentation
// models with ONNX Runtime and (in worker.go) the job pipeline around them.
// It is the only package that imports onnxruntime_go, so nothing else needs
// the ONNX Runtime library.
package inference

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/segbridge/segbridge/internal/model"
)

// Execution devices.
const (
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"
)

// RuntimeConfig configures a Runtime.
type RuntimeConfig struct {
	// LibraryPath is the ONNX Runtime shared library (libonnxruntime.so.1).
	// Required. Every Runtime in a process must use the same library.
	LibraryPath string
	// Device is "cpu" (the default) or "cuda". With "cuda" the CUDA execution
	// provider is tried and, where it cannot be used, the Runtime falls back to
	// the CPU and logs why; Device() says which is in use.
	Device string
	// IntraOpThreads is the number of threads one inference uses; 0 (the
	// default) lets ONNX Runtime choose (one per physical core).
	IntraOpThreads int
}

func (c *RuntimeConfig) withDefaults() RuntimeConfig {
	out := *c
	if out.Device == "" {
		out.Device = DeviceCPU
	}
	out.Device = strings.ToLower(strings.TrimSpace(out.Device))
	return out
}

func (c *RuntimeConfig) validate() error {
	var errs []error
	if c.LibraryPath == "" {
		errs = append(errs, errors.New("library_path: required"))
	} else if fi, err := os.Stat(c.LibraryPath); err != nil {
		errs = append(errs, fmt.Errorf("library_path: %w", err))
	} else if fi.IsDir() {
		errs = append(errs, fmt.Errorf("library_path: %s is a folder, want libonnxruntime.so.1", c.LibraryPath))
	}
	if c.Device != DeviceCPU && c.Device != DeviceCUDA {
		errs = append(errs, fmt.Errorf("device: %q is not one of cpu, cuda", c.Device))
	}
	if c.IntraOpThreads < 0 {
		errs = append(errs, fmt.Errorf("intra_op_threads: %d is negative", c.IntraOpThreads))
	}
	return errors.Join(errs...)
}

// ortEnv reference-counts ONNX Runtime's environment. onnxruntime_go keeps the
// environment and the shared-library path in its own package-level variables
// (one per process; a second InitializeEnvironment fails and
// DestroyEnvironment pulls it from under every session), so the guard has to
// be process-wide too: this is the package's only mutable package-level state,
// forced by the library. The first Runtime initialises the environment, the
// last Close destroys it.
var ortEnv struct {
	mu   sync.Mutex
	refs int
	lib  string
}

func acquireEnv(lib string) error {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.refs > 0 {
		if lib != ortEnv.lib {
			return fmt.Errorf("ONNX Runtime is already loaded from %s in this process; cannot also load %s", ortEnv.lib, lib)
		}
		ortEnv.refs++
		return nil
	}
	if ort.IsInitialized() {
		return errors.New("ONNX Runtime was initialised outside package inference")
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("initialise ONNX Runtime from %s: %w", lib, err)
	}
	ortEnv.refs, ortEnv.lib = 1, lib
	return nil
}

func releaseEnv() error {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.refs == 0 {
		return nil
	}
	ortEnv.refs--
	if ortEnv.refs > 0 {
		return nil
	}
	ortEnv.lib = ""
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("destroy ONNX Runtime environment: %w", err)
	}
	return nil
}

// Runtime runs models with ONNX Runtime. It keeps one session per model
// file, version and input/output names, created on first use. It is safe for
// concurrent use; ONNX Runtime runs one session from several goroutines.
type Runtime struct {
	logger zerolog.Logger
	cfg    RuntimeConfig

	// life is held for reading by every Segment and for writing by Close, so
	// that Close waits for running inferences before it frees their sessions.
	life   sync.RWMutex
	closed bool

	mu       sync.Mutex // guards device and sessions
	device   string
	sessions map[sessionKey]*session

	// wholeGraph turns off cutting the output layer off (see head.go), and
	// slabBytes sets the output layer's slab size (default
	// defaultSlabBytes), for tests.
	wholeGraph bool
	slabBytes  int
}

type sessionKey struct {
	onnxPath, version, input, output string
	mode                             model.InputMode
}

type session struct {
	// s runs the model; with head set, only its body, up to the hidden
	// layer that head (the output layer alone) turns into the output.
	s    *ort.DynamicAdvancedSession
	head *ort.DynamicAdvancedSession
	cut  *headSplit
	// batch is the graph's fixed batch size in slice mode, 0 when free.
	batch int64
	// channels is the graph's fixed number of output channels, 0 when it
	// is not fixed: with it, outputs are allocated before the run.
	channels int64
}

// NewRuntime loads the ONNX Runtime library (once per process) and decides on
// the execution device.
func NewRuntime(logger zerolog.Logger, cfg RuntimeConfig) (*Runtime, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("runtime config: %w", err)
	}
	if err := acquireEnv(cfg.LibraryPath); err != nil {
		return nil, err
	}
	r := &Runtime{
		logger:   logger.With().Str("component", "runtime").Logger(),
		cfg:      cfg,
		device:   DeviceCPU,
		sessions: map[sessionKey]*session{},
	}
	if cfg.Device == DeviceCUDA {
		if err := r.probeCUDA(); err != nil {
			r.logger.Warn().Err(err).Msg("CUDA execution provider unavailable; running on the CPU")
		} else {
			r.device = DeviceCUDA
		}
	}
	r.logger.Info().Str("device", r.device).Str("ort_version", ort.GetVersion()).
		Str("library", cfg.LibraryPath).Msg("ONNX Runtime ready")
	return r, nil
}

// probeCUDA checks that the library can append the CUDA provider at all; a
// library built without it fails here. A GPU that fails later, when a session
// is created, is handled in newSession.
func (r *Runtime) probeCUDA() error {
	opts, err := r.sessionOptions(true)
	if err != nil {
		return err
	}
	return opts.Destroy()
}

// Device returns the execution device in use, "cpu" or "cuda". It can change
// from "cuda" to "cpu" once, when a session cannot be created on the GPU.
func (r *Runtime) Device() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.device
}

// Close waits for running inferences, frees the sessions and releases the
// ONNX Runtime environment. It is safe to call twice.
func (r *Runtime) Close() error {
	r.life.Lock()
	defer r.life.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for k, s := range r.sessions {
		if err := s.destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroy session %s: %w", k.onnxPath, err))
		}
		delete(r.sessions, k)
	}
	if err := releaseEnv(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *Runtime) sessionOptions(cuda bool) (*ort.SessionOptions, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	if r.cfg.IntraOpThreads > 0 {
		if err := opts.SetIntraOpNumThreads(r.cfg.IntraOpThreads); err != nil {
			opts.Destroy()
			return nil, fmt.Errorf("set intra-op threads: %w", err)
		}
	}
	// ONNX Runtime's threads spin for a while after each run, waiting for
	// more work that never comes: on two cores they took the CPU from
	// deciding the labels, which then took twice as long (model5_gw_ae on
	// ch2: postprocessing 50 ms with spinning, 37 without, and the run
	// itself no slower), and from Orthanc and the other jobs.
	if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		opts.Destroy()
		return nil, fmt.Errorf("turn off spinning: %w", err)
	}
	if cuda {
		cudaOpts, err := ort.NewCUDAProviderOptions()
		if err != nil {
			opts.Destroy()
			return nil, fmt.Errorf("CUDA provider options: %w", err)
		}
		defer cudaOpts.Destroy()
		if err := opts.AppendExecutionProviderCUDA(cudaOpts); err != nil {
			opts.Destroy()
			return nil, fmt.Errorf("append CUDA execution provider: %w", err)
		}
	}
	return opts, nil
}

// session returns the cached session for m, creating it on first use. The
// caller holds r.life for reading.
func (r *Runtime) session(m *model.Model) (*session, error) {
	key := sessionKey{m.ONNXPath, m.Version, m.Input.Name, m.Output.Name, m.Input.Mode}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.sessions[key]; ok {
		return s, nil
	}
	batch, channels, err := checkModelIO(m)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	s, err := r.newSession(m, r.device == DeviceCUDA)
	if err != nil && r.device == DeviceCUDA {
		r.logger.Warn().Err(err).Str("model", m.Name).
			Msg("cannot create a session on the GPU; falling back to the CPU for this and later models")
		r.device = DeviceCPU
		s, err = r.newSession(m, false)
	}
	if err != nil {
		return nil, fmt.Errorf("model %s: load %s: %w", m.Name, m.ONNXPath, err)
	}
	s.batch, s.channels = batch, channels
	r.logger.Info().Str("model", m.Name).Str("version", m.Version).Str("device", r.device).
		Dur("load", time.Since(start)).Msg("model loaded")
	r.sessions[key] = s
	return s, nil
}

func (r *Runtime) newSession(m *model.Model, cuda bool) (*session, error) {
	opts, err := r.sessionOptions(cuda)
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	data, err := os.ReadFile(m.ONNXPath)
	if err != nil {
		return nil, err
	}
	// Rewrites that keep every output value and lower the memory a run
	// takes (gelu.go, head.go) need the model loaded from its bytes; a
	// model they do not apply to is loaded from its file as before, so that
	// ONNX Runtime finds any external weights beside it.
	fused, n, err := fuseGelu(data)
	if err != nil {
		fused, n = data, 0 // a file this reader cannot read goes to ONNX Runtime whole
	}
	if m.Input.Mode == model.InputVolume && !r.wholeGraph {
		if s := r.newCutSession(m, fused, opts); s != nil {
			return s, nil
		}
	}
	if n > 0 {
		s, err := ort.NewDynamicAdvancedSessionWithONNXData(fused, []string{m.Input.Name}, []string{m.Output.Name}, opts)
		if err == nil {
			r.logger.Debug().Str("model", m.Name).Int("gelus", n).Msg("fused GELU chains")
			return &session{s: s}, nil
		}
		r.logger.Warn().Err(err).Str("model", m.Name).Msg("cannot load the model with its GELU chains fused; running it as written")
	}
	s, err := ort.NewDynamicAdvancedSession(m.ONNXPath, []string{m.Input.Name}, []string{m.Output.Name}, opts)
	if err != nil {
		return nil, err
	}
	return &session{s: s}, nil
}

// newCutSession returns the sessions of a model whose 1x1x1 output layer
// is worth cutting off (head.go): it has over twice as many channels as
// its input, so that the hidden layer is less than half the output. It
// returns nil for any other model, or one that ONNX Runtime does not load
// cut.
func (r *Runtime) newCutSession(m *model.Model, data []byte, opts *ort.SessionOptions) *session {
	cut, ok, err := splitHead(data, m.Output.Name)
	if err != nil || !ok || cut.classes <= 2*cut.hiddenChannels {
		return nil
	}
	body, err := ort.NewDynamicAdvancedSessionWithONNXData(cut.body, []string{m.Input.Name}, []string{cut.hidden}, opts)
	if err != nil {
		r.logger.Warn().Err(err).Str("model", m.Name).Msg("cannot run the model without its output layer; running it whole")
		return nil
	}
	head, err := ort.NewDynamicAdvancedSessionWithONNXData(cut.head, []string{cut.hidden}, []string{m.Output.Name}, opts)
	if err != nil {
		body.Destroy()
		r.logger.Warn().Err(err).Str("model", m.Name).Msg("cannot run the model's output layer alone; running it whole")
		return nil
	}
	r.logger.Info().Str("model", m.Name).Int64("hidden_channels", cut.hiddenChannels).Int64("classes", cut.classes).
		Msg("running the 1x1x1 output layer slab by slab")
	return &session{s: body, head: head, cut: cut}
}

func (s *session) destroy() error {
	var errs []error
	if s.head != nil {
		errs = append(errs, s.head.Destroy())
	}
	return errors.Join(append(errs, s.s.Destroy())...)
}

// checkModelIO compares the graph's declared inputs and outputs with the
// manifest, so that a model that does not fit fails with a reason before any
// data is fed to it. It returns the input's fixed batch size in slice mode (0
// when free) and the output's fixed number of channels (0 when free).
func checkModelIO(m *model.Model) (batch, channels int64, err error) {
	ins, outs, err := ort.GetInputOutputInfo(m.ONNXPath)
	if err != nil {
		return 0, 0, fmt.Errorf("model %s: read %s: %w", m.Name, m.ONNXPath, err)
	}
	mismatch := func(format string, args ...any) error {
		return fmt.Errorf("model %s: %s: %w", m.Name, fmt.Sprintf(format, args...), ErrModelMismatch)
	}
	if len(ins) != 1 || ins[0].Name != m.Input.Name {
		return 0, 0, mismatch("the manifest's input %q must be the graph's only input, but the graph has inputs %s", m.Input.Name, ioNames(ins))
	}
	rank, layout := 5, "[1, C, D, H, W]"
	if m.Input.Mode == model.InputSlices {
		rank, layout = 4, "[N, C, H, W]"
	}
	in := ins[0]
	if err := checkTensorInfo(in, "input", m.Input.Mode, rank, layout); err != nil {
		return 0, 0, mismatch("%v", err)
	}
	d := in.Dimensions
	wantC := int64(1)
	if m.Input.Mode == model.InputSlices {
		wantC = int64(m.Input.Channels)
	}
	if d[1] > 0 && d[1] != wantC {
		return 0, 0, mismatch("input %q has %d channels, but %s mode feeds %d", in.Name, d[1], m.Input.Mode, wantC)
	}
	if m.Input.Mode == model.InputWindow {
		p := m.Input.PatchSize
		for i, name := range []string{"D", "H", "W"} {
			if d[2+i] > 0 && d[2+i] != int64(p[i]) {
				return 0, 0, mismatch("input %q has shape %v, but the manifest's patch_size is %v (%s differs)", in.Name, d, p, name)
			}
		}
	}
	for _, o := range outs {
		if o.Name == m.Output.Name {
			if err := checkTensorInfo(o, "output", m.Input.Mode, rank, strings.Replace(layout, "C", "K", 1)); err != nil {
				return 0, 0, mismatch("%v", err)
			}
			if m.Input.Mode == model.InputSlices && d[0] > 0 {
				batch = d[0]
			}
			if len(o.Dimensions) > 1 && o.Dimensions[1] > 0 {
				channels = o.Dimensions[1]
			}
			return batch, channels, nil
		}
	}
	return 0, 0, mismatch("the graph has no output %q (it has %s)", m.Output.Name, ioNames(outs))
}

func checkTensorInfo(info ort.InputOutputInfo, what string, mode model.InputMode, rank int, layout string) error {
	if info.OrtValueType != ort.ONNXTypeTensor {
		return fmt.Errorf("%s %q is a %s, want a tensor", what, info.Name, info.OrtValueType)
	}
	if info.DataType != ort.TensorElementDataTypeFloat {
		return fmt.Errorf("%s %q has element type %s, want float32", what, info.Name, info.DataType)
	}
	if len(info.Dimensions) != rank {
		return fmt.Errorf("%s %q has shape %v, but %s mode needs %d dimensions %s", what, info.Name, info.Dimensions, mode, rank, layout)
	}
	if b := info.Dimensions[0]; b > 1 && mode != model.InputSlices {
		return fmt.Errorf("%s %q has batch size %d, want 1", what, info.Name, b)
	}
	return nil
}

func ioNames(infos []ort.InputOutputInfo) string {
	if len(infos) == 0 {
		return "none"
	}
	names := make([]string, len(infos))
	for i, in := range infos {
		names[i] = fmt.Sprintf("%q", in.Name)
	}
	return strings.Join(names, ", ")
}
