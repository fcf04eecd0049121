package volume

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// stackOf parses n axial synthetic slices whose pixels all hold 100*k+i
// (k = spatial index along +z, i = pixel index), after modify(k, &s).
func stackOf(t *testing.T, n int, modify func(k int, s *synth)) []*Instance {
	t.Helper()
	out := make([]*Instance, n)
	for k := range n {
		s := axialSynth(k)
		vals := make([]uint16, s.rows*s.cols)
		for i := range vals {
			vals[i] = uint16(100*k + i)
		}
		s.raw = u16(le, vals...)
		if modify != nil {
			modify(k, &s)
		}
		out[k] = s.parse(t)
	}
	return out
}

func TestAssemble_OrdersByPositionNotInstanceNumber(t *testing.T) {
	tests := []struct {
		name   string
		iop    [6]float64
		normal [3]float64
	}{
		{name: "axial", iop: [6]float64{1, 0, 0, 0, 1, 0}, normal: [3]float64{0, 0, 1}},
		{name: "sagittal", iop: [6]float64{0, 1, 0, 0, 0, -1}, normal: [3]float64{-1, 0, 0}},
		{name: "coronal", iop: [6]float64{1, 0, 0, 0, 0, -1}, normal: [3]float64{0, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 7
			// InstanceNumbers run against the spatial order and the
			// instances arrive shuffled.
			numbers := rand.New(rand.NewPCG(1, 2)).Perm(n)
			insts := stackOf(t, n, func(k int, s *synth) {
				s.iop = tt.iop
				s.pos = [3]float64{5, -7, 11}
				for c := range 3 {
					s.pos[c] += 2.5 * float64(k) * tt.normal[c]
				}
				s.instanceNumber = numbers[k] + 1
			})
			shuffled := slices.Clone(insts)
			rand.New(rand.NewPCG(3, 4)).Shuffle(n, func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

			v, err := Assemble(shuffled, Limits{})
			if err != nil {
				t.Fatalf("Assemble: %v", err)
			}
			if v.Cols != 4 || v.Rows != 3 || v.Depth != n {
				t.Fatalf("size = %dx%dx%d, want 4x3x%d", v.Cols, v.Rows, v.Depth, n)
			}
			for k := range n {
				if v.Slices[k].SOPInstanceUID != insts[k].SOPInstanceUID {
					t.Errorf("Slices[%d] = %s, want %s", k, v.Slices[k].SOPInstanceUID, insts[k].SOPInstanceUID)
				}
				if got := v.Data[k*12+5]; got != float32(100*k+5) {
					t.Errorf("voxel (1,1,%d) = %g, want %d", k, got, 100*k+5)
				}
			}
			if v.Spacing != [3]float64{0.75, 0.5, 2.5} {
				t.Errorf("Spacing = %v, want [0.75 0.5 2.5]", v.Spacing)
			}
			if v.Origin != [3]float64{5, -7, 11} {
				t.Errorf("Origin = %v", v.Origin)
			}
			want := [3][3]float64{
				{tt.iop[0], tt.iop[1], tt.iop[2]},
				{tt.iop[3], tt.iop[4], tt.iop[5]},
				tt.normal,
			}
			for a := range 3 {
				for c := range 3 {
					if math.Abs(v.Direction[a][c]-want[a][c]) > 1e-12 {
						t.Fatalf("Direction = %v, want %v", v.Direction, want)
					}
				}
			}
			if v.SeriesInstanceUID != testSeriesUID || v.FrameOfReferenceUID != testFrameUID || v.Modality != "MR" {
				t.Errorf("identifiers = %q %q %q", v.SeriesInstanceUID, v.FrameOfReferenceUID, v.Modality)
			}
			if v.Header == nil {
				t.Error("Header is nil")
			}
		})
	}
}

func TestAssemble_PerSliceRescale(t *testing.T) {
	// Some scanners vary the slope per slice; each slice keeps its own.
	insts := stackOf(t, 3, func(k int, s *synth) {
		s.slope, s.intercept = fmt.Sprint(k+1), "-10"
		if k == 1 {
			s.pixRep = 1
			s.raw = u16(le, 0xffff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
		}
	})
	v, err := Assemble(insts, Limits{})
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	got := []float32{v.Data[0], v.Data[1], v.Data[12], v.Data[13], v.Data[24], v.Data[25]}
	want := []float32{-10, -9, -12, -8, 590, 593}
	if !slices.Equal(got, want) {
		t.Errorf("voxels = %v, want %v", got, want)
	}
}

func TestAssemble_SingleSlice(t *testing.T) {
	v, err := Assemble(stackOf(t, 1, nil), Limits{})
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	if v.Depth != 1 || v.Spacing[2] != 2 || v.Direction[2] != [3]float64{0, 0, 1} {
		t.Errorf("depth %d spacing %v direction %v", v.Depth, v.Spacing, v.Direction)
	}
}

func TestAssemble_Rejections(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		modify  func(k int, s *synth)
		limits  Limits
		wantErr string
	}{
		{
			name:    "empty",
			n:       0,
			wantErr: "the series has no image instances",
		},
		{
			name: "mixed orientation",
			n:    4,
			modify: func(k int, s *synth) {
				if k == 2 {
					s.iop = [6]float64{0, 1, 0, 0, 0, -1}
				}
			},
			wantErr: "the series mixes orientations",
		},
		{
			name: "slightly rotated slice",
			n:    4,
			modify: func(k int, s *synth) {
				if k == 3 {
					a := 0.2 * math.Pi / 180
					s.iop = [6]float64{math.Cos(a), math.Sin(a), 0, -math.Sin(a), math.Cos(a), 0}
				}
			},
			wantErr: "the series mixes orientations",
		},
		{
			name: "two stacks side by side",
			n:    6,
			modify: func(k int, s *synth) {
				if k%2 == 1 {
					s.pos[0] += 40
					s.pos[2] -= 1
				}
			},
			wantErr: "slices do not form one stack: instance 1.2.826.0.1.3680043.8.498.200.1 lies 40.000 mm off the slice normal",
		},
		{
			name: "duplicate position",
			n:    5,
			modify: func(k int, s *synth) {
				if k == 3 {
					s.pos[2] -= 2
				}
			},
			wantErr: "are both at position [-10 -20 34]",
		},
		{
			name: "uneven gap",
			n:    6,
			modify: func(k int, s *synth) {
				if k >= 4 {
					s.pos[2] += 2
				}
			},
			wantErr: "uneven slice spacing: slices 3 and 4",
		},
		{
			name: "gap off by 2%",
			n:    4,
			modify: func(k int, s *synth) {
				if k == 3 {
					s.pos[2] += 0.04
				}
			},
			wantErr: "uneven slice spacing",
		},
		{
			name:    "over voxel limit",
			n:       4,
			limits:  Limits{MaxVoxels: 47},
			wantErr: "volume of 4x3x4 = 48 voxels exceeds the limit of 47",
		},
		{
			name:    "over byte limit",
			n:       4,
			limits:  Limits{MaxBytes: 191},
			wantErr: "volume of 4x3x4 needs 192 bytes, over the limit of 191",
		},
		{
			name: "mixed sizes",
			n:    3,
			modify: func(k int, s *synth) {
				if k == 1 {
					s.rows, s.raw = 2, make([]byte, 16)
				}
			},
			wantErr: "the series mixes image sizes",
		},
		{
			name: "mixed pixel spacing",
			n:    3,
			modify: func(k int, s *synth) {
				if k == 2 {
					s.spacing[1] = 0.8
				}
			},
			wantErr: "the series mixes pixel spacings",
		},
		{
			name: "two series",
			n:    3,
			modify: func(k int, s *synth) {
				if k == 2 {
					s.series = "1.2.3.4"
				}
			},
			wantErr: "belong to different series",
		},
		{
			name: "same instance twice",
			n:    3,
			modify: func(k int, s *synth) {
				if k == 2 {
					s.sop = axialSynth(0).sop
				}
			},
			wantErr: "instance 1.2.826.0.1.3680043.8.498.200.0 appears more than once",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			insts := stackOf(t, tt.n, tt.modify)
			v, err := Assemble(insts, tt.limits)
			if err == nil {
				t.Fatalf("Assemble = %dx%dx%d, want error containing %q", v.Cols, v.Rows, v.Depth, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidSeries) {
				t.Errorf("error %q does not wrap ErrInvalidSeries", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			t.Logf("message: %v", err)
		})
	}
}

func TestAssemble_ToleratesRounding(t *testing.T) {
	// Positions and orientations as a scanner rounds them still make one stack.
	insts := stackOf(t, 5, func(k int, s *synth) {
		s.pos[0] += 0.004 * float64(k%2)
		s.pos[2] += 0.005 * float64(k%3)
		s.iop[1] = 0.0004 * float64(k%2)
	})
	if _, err := Assemble(insts, Limits{}); err != nil {
		t.Fatalf("Assemble: %v", err)
	}
}
