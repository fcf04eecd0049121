package dicomseg

import (
	"errors"
	"slices"
	"testing"
)

func TestDecode_RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    geometry
		n    int
		skip int
	}{
		{"axial, three segments", axial, 3, 0},
		{"sagittal, one empty segment", sagittal, 3, 2},
		{"oblique, one segment", oblique, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVolume(t, tc.g)
			labels := blobLabels(tc.g, tc.n, tc.skip, 7)
			segs := testSegments(tc.n)
			res, err := Encode(v, labels, segs, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			d, err := Decode(res.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if d.SOPInstanceUID != res.SOPInstanceUID || d.SeriesInstanceUID != res.SeriesInstanceUID || d.ReferencedSeriesUID != v.SeriesInstanceUID {
				t.Errorf("UIDs %s %s %s, want %s %s %s", d.SOPInstanceUID, d.SeriesInstanceUID, d.ReferencedSeriesUID,
					res.SOPInstanceUID, res.SeriesInstanceUID, v.SeriesInstanceUID)
			}
			if d.PixelSpacing != [2]float64{tc.g.spacing[1], tc.g.spacing[0]} || d.SliceSpacing != tc.g.spacing[2] {
				t.Errorf("spacing %v %v, want %v", d.PixelSpacing, d.SliceSpacing, tc.g.spacing)
			}
			got, err := d.OnGrid(v.Slices, v.Cols, v.Rows)
			if err != nil {
				t.Fatal(err)
			}
			// Labels are 1..n, so segment numbers equal labels.
			if !slices.Equal(got, labels) {
				t.Fatal("labels read back differ from those encoded")
			}
			want := make([]int, tc.n)
			for _, l := range labels {
				if l > 0 {
					want[l-1]++
				}
			}
			if vox := d.Voxels(); !slices.Equal(vox, want) {
				t.Errorf("voxels per segment %v, want %v", vox, want)
			}
			for i, s := range d.Segments {
				if s.Number != i+1 || s.Label != segs[i].Name || s.Type != segs[i].Type || s.AlgorithmName != "brain-unet" || s.AlgorithmVersion != "2.1.0" {
					t.Errorf("segment %d read back as %+v", i+1, s)
				}
				for c := range 3 {
					if diff := int(s.RGB[c]) - int(segs[i].RGB[c]); diff < -1 || diff > 1 {
						t.Errorf("segment %d colour %v, want %v within 1", i+1, s.RGB, segs[i].RGB)
						break
					}
				}
			}
			wantML := tc.g.spacing[0] * tc.g.spacing[1] * tc.g.spacing[2] / 1000
			if got := d.VoxelVolumeML(); got < wantML*(1-1e-12) || got > wantML*(1+1e-12) {
				t.Errorf("voxel volume %g mL, want %g", got, wantML)
			}
		})
	}
}

func TestDecode_Fractional(t *testing.T) {
	g := axial
	v := newVolume(t, g)
	n := g.cols * g.rows * g.depth
	prob := make([]float32, n)
	for i := range prob {
		prob[i] = float32(i%10) / 9 // 0..1: values of at least 0.5 are set
	}
	res, err := EncodeFractional(v, [][]float32{prob}, testSegments(1), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(res.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.OnGrid(v.Slices, v.Cols, v.Rows)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prob {
		if want := p >= 0.5; (got[i] == 1) != want {
			t.Fatalf("voxel %d (probability %.3f) read back as %d", i, p, got[i])
		}
	}
}

func TestDecode_Errors(t *testing.T) {
	v := newVolume(t, axial)
	res, err := Encode(v, blobLabels(axial, 2, 0, 1), testSegments(2), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not DICOM", []byte("hello, this is not a DICOM file at all")},
		{"cut short", res.Bytes[:len(res.Bytes)/2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.data); !errors.Is(err, ErrNotReadable) {
				t.Fatalf("Decode = %v, want ErrNotReadable", err)
			}
		})
	}
	t.Run("frames on another grid", func(t *testing.T) {
		d, err := Decode(res.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.OnGrid(v.Slices, v.Cols+1, v.Rows); !errors.Is(err, ErrNotReadable) {
			t.Errorf("OnGrid on a wider grid = %v, want ErrNotReadable", err)
		}
		other := slices.Clone(v.Slices)
		for k := range other {
			other[k].SOPInstanceUID += ".9"
		}
		if _, err := d.OnGrid(other, v.Cols, v.Rows); !errors.Is(err, ErrNotReadable) {
			t.Errorf("OnGrid on another series = %v, want ErrNotReadable", err)
		}
	})
}

func TestRGBFromCIELab_Inverse(t *testing.T) {
	for _, rgb := range [][3]uint8{{0, 0, 0}, {255, 255, 255}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 200, 0}, {128, 64, 200}, {17, 99, 3}} {
		got := rgbFromCIELab(cieLab(rgb))
		for c := range 3 {
			if d := int(got[c]) - int(rgb[c]); d < -1 || d > 1 {
				t.Errorf("rgb %v -> lab -> %v", rgb, got)
				break
			}
		}
	}
}

// FuzzDecode feeds Decode and OnGrid bytes that come from outside (a SEG
// read from Orthanc): they may fail, never panic, and what they return is
// consistent with itself.
func FuzzDecode(f *testing.F) {
	v := newVolume(f, axial)
	for seed := range uint64(3) {
		res, err := Encode(v, blobLabels(axial, 2, 0, seed), testSegments(2), testOptions())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(res.Bytes)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrNotReadable) {
				t.Fatalf("error %v does not wrap ErrNotReadable", err)
			}
			return
		}
		vox := d.Voxels()
		if len(vox) != len(d.Segments) {
			t.Fatalf("%d counts for %d segments", len(vox), len(d.Segments))
		}
		labels, err := d.OnGrid(v.Slices, v.Cols, v.Rows)
		if err != nil {
			return
		}
		if len(labels) != v.Cols*v.Rows*v.Depth {
			t.Fatalf("%d labels for a %dx%dx%d grid", len(labels), v.Cols, v.Rows, v.Depth)
		}
	})
}
