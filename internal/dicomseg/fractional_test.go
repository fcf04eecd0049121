package dicomseg

import (
	"math"
	"testing"
)

func TestEncodeFractional_Valid(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    geometry
		n    int
	}{
		{"Axial_OneSegment", axial, 1},
		{"Odd7x5x3_ThreeSegments", odd, 3},
		{"Oblique_TwelveSegments", oblique, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVolume(t, tc.g)
			nvox := tc.g.cols * tc.g.rows * tc.g.depth
			segs := testSegments(tc.n)
			probs := make([][]float32, tc.n)
			for n := range probs {
				probs[n] = make([]float32, nvox)
				for i := range probs[n] {
					// A ramp that leaves slice 0 of segment 1 empty and overlaps the others.
					if k := i / (tc.g.cols * tc.g.rows); !(n == 0 && k == 0) {
						probs[n][i] = float32((i*7+n*13)%256) / 255
					}
				}
			}
			res, err := EncodeFractional(v, probs, segs, testOptions())
			if err != nil {
				t.Fatalf("EncodeFractional: %v", err)
			}
			path := writeTemp(t, res.Bytes)
			checkDciodvfy(t, path)
			got := readSeg(t, path)
			if got.SegmentationType != "FRACTIONAL" || got.NumberOfFrames != res.Frames {
				t.Fatalf("SegmentationType %q, %d frames; want FRACTIONAL, %d", got.SegmentationType, got.NumberOfFrames, res.Frames)
			}
			npix := tc.g.cols * tc.g.rows
			covered := map[[2]int]bool{}
			for f, fr := range got.Frames {
				k := -1
				for kk, s := range v.Slices {
					if s.SOPInstanceUID == fr.RefSOPInstanceUID {
						k = kk
					}
				}
				if k < 0 || fr.Segment < 1 || fr.Segment > tc.n {
					t.Fatalf("frame %d: segment %d, source %s", f, fr.Segment, fr.RefSOPInstanceUID)
				}
				covered[[2]int{fr.Segment, k}] = true
				for p, q := range got.pixels[f] {
					want := uint8(math.Round(float64(probs[fr.Segment-1][k*npix+p]) * 255))
					if q != want {
						t.Fatalf("frame %d (segment %d, slice %d) pixel %d = %d, want %d", f, fr.Segment, k, p, q, want)
					}
				}
			}
			// Every (segment, slice) with a value has its frame.
			for n := range tc.n {
				for k := range tc.g.depth {
					if (n != 0 || k != 0) && !covered[[2]int{n + 1, k}] {
						t.Errorf("segment %d slice %d has no frame", n+1, k)
					}
				}
			}
		})
	}
}

func TestEncodeFractional_Errors(t *testing.T) {
	v := newVolume(t, odd)
	nvox := odd.cols * odd.rows * odd.depth
	if _, err := EncodeFractional(v, [][]float32{make([]float32, nvox)}, testSegments(2), testOptions()); err == nil {
		t.Error("one volume for two segments: no error")
	}
	bad := make([]float32, nvox)
	bad[3] = 1.5
	if _, err := EncodeFractional(v, [][]float32{bad}, testSegments(1), testOptions()); err == nil {
		t.Error("probability 1.5: no error")
	}
	bad[3] = float32(math.NaN())
	if _, err := EncodeFractional(v, [][]float32{bad}, testSegments(1), testOptions()); err == nil {
		t.Error("probability NaN: no error")
	}
}

// TestEncode_MultiFrameSource checks that frames of an enhanced source are
// referenced by SOPInstanceUID and ReferencedFrameNumber, and that the
// instance is listed once in ReferencedSeriesSequence.
func TestEncode_MultiFrameSource(t *testing.T) {
	v := newVolume(t, axial)
	for k := range v.Slices {
		v.Slices[k].SOPInstanceUID = "1.2.826.0.1.3680043.8.498.3000"
		v.Slices[k].SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
		v.Slices[k].Frame = v.Depth - k // frames in reverse spatial order
	}
	labels := blobLabels(axial, 2, 0, 9)
	res, err := Encode(v, labels, testSegments(2), testOptions())
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	path := writeTemp(t, res.Bytes)
	checkDciodvfy(t, path)
	got := readSeg(t, path)
	if n := len(got.ReferencedSeries.Instances); n != 1 {
		t.Errorf("ReferencedInstanceSequence has %d items, want 1", n)
	}
	for f, fr := range got.Frames {
		if fr.RefFrameNumber == nil {
			t.Fatalf("frame %d has no ReferencedFrameNumber", f+1)
		}
		k := fr.DimensionIndexValues[1] - 1
		if *fr.RefFrameNumber != v.Depth-k {
			t.Errorf("frame %d (slice %d) references source frame %d, want %d", f+1, k, *fr.RefFrameNumber, v.Depth-k)
		}
	}
}
