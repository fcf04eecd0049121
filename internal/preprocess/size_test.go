package preprocess

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// TestRespace_Bounded checks that spacings from outside input cannot make a
// grid whose size wraps or exhausts memory: each is refused, naming the
// figures, before anything is allocated.
func TestRespace_Bounded(t *testing.T) {
	tests := []struct {
		name    string
		src     Grid
		spacing [3]float64
		wantErr string
	}{
		{
			// 10^9 voxels along each axis: 10^27 in all, which an int wraps.
			name: "1e-9 mm target", src: axial(256, 256, 100), spacing: [3]float64{1e-9, 1e-9, 1e-9},
			wantErr: "voxels along one axis, more than the 2147483647 a grid may hold",
		},
		{
			name: "1e9 mm source spacing", src: func() Grid { g := axial(4, 4, 4); g.Spacing[0] = 1e9; return g }(),
			spacing: [3]float64{1, 1, 1}, wantErr: "gives 4e+09 voxels along one axis",
		},
		{
			name: "largest spacing", src: func() Grid { g := axial(4, 4, 4); g.Spacing[2] = math.MaxFloat64; return g }(),
			spacing: [3]float64{1, 1, 1}, wantErr: "gives +Inf voxels along one axis",
		},
		{
			// Each axis fits, the product does not.
			name: "product over the bound", src: axial(2000, 2000, 2000), spacing: [3]float64{0.5, 0.5, 0.5},
			wantErr: "3600x4400x8000 voxels, more than the 2147483647",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := Respace(tt.src, tt.spacing)
			if err == nil {
				t.Fatalf("Respace = %v, want an error", g.Dims)
			}
			if !errors.Is(err, ErrGridTooLarge) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Respace error = %q, want ErrGridTooLarge containing %q", err, tt.wantErr)
			}
			t.Logf("message: %v", err)
		})
	}
	// A large grid within the bound is made.
	if g, err := Respace(axial(1000, 1000, 2), [3]float64{2, 1.1, 0.9}); err != nil || g.Len() != 1000*1000*2 {
		t.Errorf("Respace of a 2e6-voxel grid = %v, %v", g.Dims, err)
	}
}

func TestConform_Bounded(t *testing.T) {
	if _, err := Conform(axial(4, 4, 4), 1291, 1, "LIA"); !errors.Is(err, ErrGridTooLarge) {
		t.Errorf("Conform to 1291³ = %v, want ErrGridTooLarge", err)
	}
	if _, err := Conform(axial(4, 4, 4), 1<<22, 1, "LIA"); !errors.Is(err, ErrGridTooLarge) {
		t.Errorf("Conform to 2^66 voxels = %v, want ErrGridTooLarge", err)
	}
	if _, err := Conform(axial(4, 4, 4), 1290, 1, "LIA"); err != nil {
		t.Errorf("Conform to 1290³ = %v", err)
	}
}

// TestResample_RefusesGridsThatWrap hands Linear and Nearest grids whose
// Len wraps to the length of the data: they must not index with it.
func TestResample_RefusesGridsThatWrap(t *testing.T) {
	huge := axial(1<<32, 1<<32, 1) // Len() wraps to 0
	small := axial(2, 2, 2)
	if _, err := Linear(nil, huge, small, nil); !errors.Is(err, ErrGridTooLarge) {
		t.Errorf("Linear from a wrapping grid = %v, want ErrGridTooLarge", err)
	}
	if _, err := Linear(make([]float32, 8), small, huge, nil); !errors.Is(err, ErrGridTooLarge) {
		t.Errorf("Linear onto a wrapping grid = %v, want ErrGridTooLarge", err)
	}
	if _, err := Nearest(nil, huge, small, nil); !errors.Is(err, ErrGridTooLarge) {
		t.Errorf("Nearest from a wrapping grid = %v, want ErrGridTooLarge", err)
	}
	if _, err := Nearest(make([]uint8, 8), small, huge, nil); !errors.Is(err, ErrGridTooLarge) {
		t.Errorf("Nearest onto a wrapping grid = %v, want ErrGridTooLarge", err)
	}
	empty := axial(0, 2, 2)
	if _, err := Linear(nil, empty, small, nil); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("Linear from an empty grid = %v", err)
	}
}

func TestGrid_Voxels(t *testing.T) {
	tests := []struct {
		dims    [3]int
		want    int
		wantErr string
	}{
		{dims: [3]int{181, 217, 181}, want: 181 * 217 * 181},
		{dims: [3]int{MaxGridVoxels, 1, 1}, want: MaxGridVoxels},
		{dims: [3]int{1 << 16, 1 << 15, 1}, wantErr: "65536x32768x1 voxels, more than the 2147483647"},
		{dims: [3]int{1 << 32, 1 << 32, 1}, wantErr: "4294967296x4294967296x1 voxels, more than"},
		{dims: [3]int{4, -1, 4}, wantErr: "is empty"},
	}
	for _, tt := range tests {
		got, err := Grid{Dims: tt.dims}.Voxels()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Voxels(%v) = %d, %v; want error containing %q", tt.dims, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Voxels(%v) = %d, %v; want %d", tt.dims, got, err, tt.want)
		}
	}
}
