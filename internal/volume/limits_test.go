package volume

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
)

func TestLimits_Defaults(t *testing.T) {
	l := Limits{}.WithDefaults()
	if l.MaxVoxels != 512*512*2048 || l.MaxBytes != 2<<30 {
		t.Fatalf("defaults = %+v, want 512x512x2048 voxels and 2 GiB", l)
	}
	// Consistent: the byte limit admits exactly the volume the voxel limit admits.
	if l.MaxBytes != 4*l.MaxVoxels {
		t.Errorf("MaxBytes %d is not 4 bytes per voxel of MaxVoxels %d", l.MaxBytes, l.MaxVoxels)
	}
}

func TestLimits_CheckSeries(t *testing.T) {
	mr := Header{Rows: 512, Columns: 512, BitsAllocated: 16}
	tests := []struct {
		name      string
		lim       Limits
		h         Header
		instances int
		wantErr   string // "" when the series must pass
	}{
		{name: "largest default series", h: mr, instances: 2048},
		{name: "one slice over", h: mr, instances: 2049,
			wantErr: "2049 instances of 512x512 pixels: volume of 512x512x2049 = 537133056 voxels exceeds the limit of 536870912; raise SEGBRIDGE_MAX_VOXELS"},
		{name: "enhanced frames count", h: Header{Rows: 512, Columns: 512, NumberOfFrames: 1025, BitsAllocated: 16}, instances: 2,
			wantErr: "2 instances of 1025 frames each of 512x512 pixels: volume of 512x512x2050"},
		{name: "byte limit binds", lim: Limits{MaxBytes: 1 << 20}, h: mr, instances: 2,
			wantErr: "volume of 512x512x2 needs 2097152 bytes, over the limit of 1048576; raise SEGBRIDGE_MAX_BYTES"},
		{name: "voxel limit raised", lim: Limits{MaxVoxels: 1 << 40, MaxBytes: 1 << 42}, h: mr, instances: 100000},
		// The reported series, refused from its header before any download.
		{name: "reported UL rows", h: Header{Rows: 1 << 31, Columns: 1 << 31, BitsAllocated: 32}, instances: 4,
			wantErr: "the first instance is 2147483648x2147483648 pixels: Rows and Columns must be 1..65535"},
		{name: "planes overflow", lim: Limits{MaxVoxels: math.MaxInt64, MaxBytes: math.MaxInt64},
			h: Header{Rows: 65535, Columns: 65535, NumberOfFrames: math.MaxInt32, BitsAllocated: 8}, instances: math.MaxInt32,
			wantErr: "= more than can be counted voxels exceeds the limit"},
		{name: "bytes overflow", lim: Limits{MaxVoxels: math.MaxInt64, MaxBytes: math.MaxInt64},
			h: Header{Rows: 65535, Columns: 65535, NumberOfFrames: 1 << 30, BitsAllocated: 8}, instances: 1,
			wantErr: "needs more than can be counted bytes, over the limit"},
		{name: "no instances", h: mr, wantErr: "the series has no instances"},
		{name: "not an image", h: Header{}, instances: 3, wantErr: "has no Rows or Columns: it is not an image"},
		{name: "negative frames", h: Header{Rows: 2, Columns: 2, NumberOfFrames: -1, BitsAllocated: 8}, instances: 1,
			wantErr: "NumberOfFrames -1"},
		{name: "12 bits", h: Header{Rows: 2, Columns: 2, BitsAllocated: 12}, instances: 1,
			wantErr: "BitsAllocated 12: only 8, 16 or 32"},
		{name: "colour", h: Header{Rows: 2, Columns: 2, BitsAllocated: 8, SamplesPerPixel: 3}, instances: 1,
			wantErr: "SamplesPerPixel 3: colour images"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.lim.CheckSeries(tt.h, tt.instances)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckSeries = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidSeries) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckSeries = %v, want ErrInvalidSeries containing %q", err, tt.wantErr)
			}
			t.Logf("message: %v", err)
		})
	}
}

// TestLimits_CheckSeriesAgreesWithAssemble checks that a series CheckSeries
// passes is one Assemble admits, and one it refuses Assemble refuses, at the
// edge of each limit.
func TestLimits_CheckSeriesAgreesWithAssemble(t *testing.T) {
	h := Header{Rows: 3, Columns: 4, BitsAllocated: 16} // axialSynth's size
	for _, lim := range []Limits{{MaxVoxels: 48}, {MaxVoxels: 47}, {MaxBytes: 192}, {MaxBytes: 191}} {
		pre := lim.CheckSeries(h, 4)
		_, post := Assemble(stackOf(t, 4, nil), lim)
		if (pre == nil) != (post == nil) {
			t.Errorf("limits %+v: CheckSeries = %v but Assemble = %v", lim, pre, post)
		}
	}
}

func TestBudget_Add(t *testing.T) {
	b := Limits{MaxBytes: 100}.NewBudget()
	for _, n := range []int{40, 60, 0} {
		if err := b.Add(n); err != nil {
			t.Fatalf("Add(%d) with %d used = %v, want nil", n, b.Used(), err)
		}
	}
	err := b.Add(1)
	if err == nil || !errors.Is(err, ErrInvalidSeries) ||
		!strings.Contains(err.Error(), "more than 100 bytes (101 so far)") || !strings.Contains(err.Error(), "SEGBRIDGE_MAX_BYTES") {
		t.Fatalf("Add past the limit = %v", err)
	}
	if err := b.Add(0); err == nil {
		t.Error("Add after the limit passed = nil, want the error again")
	}
	if err := b.Add(-1); err == nil {
		t.Error("Add(-1) = nil")
	}
	// Saturates instead of wrapping to a small sum.
	if err := b.Add(math.MaxInt); err == nil || b.Used() != math.MaxInt64 {
		t.Errorf("Add(MaxInt) = %v, Used = %d", err, b.Used())
	}
	if err := (Limits{}).NewBudget().Add(DefaultMaxBytes); err != nil {
		t.Errorf("default budget refuses DefaultMaxBytes: %v", err)
	}
}

// TestBudget_Concurrent feeds one budget from several goroutines, as the
// download does: exactly the Adds that pass the limit fail.
func TestBudget_Concurrent(t *testing.T) {
	const goroutines, adds, size = 8, 1000, 10
	b := Limits{MaxBytes: goroutines * adds * size / 2}.NewBudget()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
	)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range adds {
				if err := b.Add(size); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if b.Used() != goroutines*adds*size {
		t.Errorf("Used = %d, want %d", b.Used(), goroutines*adds*size)
	}
	if failed != goroutines*adds/2 {
		t.Errorf("%d Adds failed, want %d", failed, goroutines*adds/2)
	}
}
