package inference

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
)

// ch2 is the ch2 axial series as the worker assembles it, made once per
// test binary (makeseries.py takes seconds) and shared: nothing modifies it.
var ch2 struct {
	once sync.Once
	v    *volume.Volume
}

// ch2Volume parses and assembles the full-resolution ch2 axial series
// (181x217x181) made by testdata/tools/makeseries.py.
func ch2Volume(tb testing.TB) *volume.Volume {
	tb.Helper()
	if _, err := os.Stat(fixture.CH2); err != nil {
		tb.Skipf("no ch2 template (install mricron-data): %v", err)
	}
	ch2.once.Do(func() { ch2.v = assembleDir(tb, fixture.MakeSeries(tb, false, "--plane", "axial").Dir) })
	if ch2.v == nil {
		tb.Fatal("the ch2 series could not be made in an earlier test")
	}
	return ch2.v
}

// assembleDir parses every file of dir and assembles the volume.
func assembleDir(tb testing.TB, dir string) *volume.Volume {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	insts := make([]*volume.Instance, 0, len(entries))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		in, err := volume.ParseInstance(b)
		if err != nil {
			tb.Fatal(err)
		}
		insts = append(insts, in)
	}
	v, err := volume.Assemble(insts, volume.Limits{})
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// brainchopModel loads a committed brainchop manifest with its .onnx from
// ../shared/models/brainchop, or skips when the shared models are absent.
func brainchopModel(tb testing.TB, name string) *model.Model {
	tb.Helper()
	files := filepath.Join("..", "..", "shared", "models", "brainchop")
	if _, err := os.Stat(filepath.Join(files, name+".onnx")); err != nil {
		tb.Skipf("needs the pretrained brainchop models in %s: %v", files, err)
	}
	m, err := model.Load(filepath.Join("..", "models", "brainchop", name+".yaml"), model.WithFileDirs(files))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func benchModel(b *testing.B, name string) *model.Model {
	if name == "head-threshold" {
		return referenceModel(b)
	}
	return brainchopModel(b, name)
}

func noStep(string, time.Time) time.Duration { return 0 }

// cpuTime is the CPU time this process has used, user and system: on a
// machine shared with other work it varies far less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports CPU milliseconds per operation since start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// BenchmarkPrepare times the geometry and intensity steps on ch2.
func BenchmarkPrepare(b *testing.B) {
	for _, name := range []string{"head-threshold", "model5_gw_ae", "mindgrab", "model21_104class"} {
		b.Run(name, func(b *testing.B) {
			m := benchModel(b, name)
			v := ch2Volume(b)
			b.ResetTimer()
			start := cpuTime()
			for b.Loop() {
				p, err := prepare(m, v, false, noStep)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(len(p.data)), "voxels")
			}
			reportCPU(b, start)
		})
	}
}

// BenchmarkFinish times the steps after inference on ch2: deciding labels
// is timed by BenchmarkDecide; this is components and mapping back.
func BenchmarkFinish(b *testing.B) {
	for _, name := range []string{"head-threshold", "model5_gw_ae"} {
		b.Run(name, func(b *testing.B) {
			m := benchModel(b, name)
			v := ch2Volume(b)
			p, err := prepare(m, v, false, noStep)
			if err != nil {
				b.Fatal(err)
			}
			r := newTestRuntime(b, RuntimeConfig{})
			sess, err := r.session(m)
			if err != nil {
				b.Fatal(err)
			}
			labels, _, err := r.runVolume(context.Background(), m, sess, p.data, p.box.Dims(), func(Progress) {})
			if err != nil {
				b.Fatal(err)
			}
			work := make([]uint8, len(labels))
			b.ResetTimer()
			start := cpuTime()
			for b.Loop() {
				copy(work, labels)
				if _, err := finish(m, p, work, noStep); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
	}
}
