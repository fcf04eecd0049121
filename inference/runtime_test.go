package inference

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/model"
)

// ortLibrary finds libonnxruntime.so.1: $SEGBRIDGE_ORT_LIB, else
// .deps/onnxruntime/ in the working directory or a folder above it.
func ortLibrary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SEGBRIDGE_ORT_LIB"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, ".deps", "onnxruntime", "libonnxruntime.so.1")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("ONNX Runtime library not found: run make deps (or set SEGBRIDGE_ORT_LIB)")
		}
		dir = parent
	}
}

// testLogger writes to the test's log.
func testLogger(t testing.TB) zerolog.Logger {
	t.Helper()
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

// newTestRuntime returns a Runtime on the CPU unless cfg says otherwise,
// closed when the test ends.
func newTestRuntime(t testing.TB, cfg RuntimeConfig) *Runtime {
	t.Helper()
	if cfg.LibraryPath == "" {
		cfg.LibraryPath = ortLibrary(t)
	}
	r, err := NewRuntime(testLogger(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// referenceModel loads testdata/models/head-threshold.yaml.
func referenceModel(t testing.TB) *model.Model {
	t.Helper()
	m, err := model.Load(filepath.Join("..", "testdata", "models", "head-threshold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNewRuntime_Config(t *testing.T) {
	lib := ortLibrary(t)
	tests := []struct {
		name    string
		cfg     RuntimeConfig
		wantErr string
	}{
		{"no library", RuntimeConfig{}, "library_path: required"},
		{"library missing", RuntimeConfig{LibraryPath: filepath.Join(t.TempDir(), "libonnxruntime.so.1")}, "library_path: stat"},
		{"library is a folder", RuntimeConfig{LibraryPath: t.TempDir()}, "is a folder"},
		{"bad device", RuntimeConfig{LibraryPath: lib, Device: "tpu"}, `device: "tpu" is not one of cpu, cuda`},
		{"negative threads", RuntimeConfig{LibraryPath: lib, IntraOpThreads: -1}, "intra_op_threads: -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRuntime(testLogger(t), tt.cfg)
			if err == nil {
				r.Close()
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewRuntime_Device(t *testing.T) {
	tests := []struct {
		name   string
		device string
	}{
		{"default is cpu", ""},
		{"cpu", "cpu"},
		// This machine has no GPU and the library no CUDA provider: the
		// Runtime must fall back to the CPU and still segment.
		{"cuda falls back", "CUDA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRuntime(t, RuntimeConfig{Device: tt.device, IntraOpThreads: 1})
			v, want := ellipsoid(0, 100)
			res, err := r.Segment(context.Background(), referenceModel(t), v)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Device(); got != DeviceCPU {
				t.Errorf("Device() = %q, want cpu", got)
			}
			compareLabels(t, res.Labels, want)
		})
	}
}

func TestRuntime_Close(t *testing.T) {
	lib := ortLibrary(t)
	m := referenceModel(t)
	a, err := NewRuntime(testLogger(t), RuntimeConfig{LibraryPath: lib})
	if err != nil {
		t.Fatal(err)
	}
	b := newTestRuntime(t, RuntimeConfig{LibraryPath: lib})
	v, want := ellipsoid(0, 100)
	if _, err := a.Segment(context.Background(), m, v); err != nil {
		t.Fatal(err)
	}
	for range 2 { // twice is safe
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Segment(context.Background(), m, v); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Segment after Close: error = %v", err)
	}
	// The other Runtime still holds the environment.
	res, err := b.Segment(context.Background(), m, v)
	if err != nil {
		t.Fatal(err)
	}
	compareLabels(t, res.Labels, want)

	if _, err := NewRuntime(testLogger(t), RuntimeConfig{LibraryPath: copyFile(t, lib)}); err == nil ||
		!strings.Contains(err.Error(), "already loaded") {
		t.Errorf("second library: error = %v", err)
	}
}

func copyFile(t *testing.T, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestRuntime_Segment_Concurrent(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	m := referenceModel(t)
	v, want := ellipsoid(0, 100)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			res, err := r.Segment(context.Background(), m, v)
			if err == nil {
				for i := range want {
					if res.Labels[i] != want[i] {
						err = errors.New("labels differ")
						break
					}
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := len(r.sessions); n != 1 {
		t.Errorf("%d sessions cached, want 1", n)
	}
}
