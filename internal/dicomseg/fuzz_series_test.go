package dicomseg

import (
	"bytes"
	"errors"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/volume"
)

// seriesFiles generates a small series with makeseries.py and returns its
// files in name order.
func seriesFiles(f testing.TB, args ...string) [][]byte {
	f.Helper()
	s := fixture.MakeSeries(f, false, args...)
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// reportedCase rewrites a generated instance as in the report: Rows and
// Columns UL 2147483648, BitsAllocated 32, empty PixelData.
func reportedCase(f *testing.F, data []byte) []byte {
	f.Helper()
	ds, err := dicom.Parse(bytes.NewReader(data), int64(len(data)), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ds.Elements {
		var v any
		switch e.Tag {
		case tag.Rows, tag.Columns:
			v, e.RawValueRepresentation = []int{1 << 31}, "UL"
		case tag.BitsAllocated, tag.BitsStored:
			v = []int{32}
		case tag.HighBit:
			v = []int{31}
		case tag.PixelData:
			v = dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: []byte{}}
		default:
			continue
		}
		if e.Value, err = dicom.NewValue(v); err != nil {
			f.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := dicom.Write(&buf, ds, dicom.SkipVRVerification()); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzSeriesToSEG runs the whole path from instance bytes to SEG bytes on
// small series of up to four instances: ParseInstance of each, Assemble, a
// labelling that needs no model (voxels above the volume's mean), Encode,
// and the SEG read back with suyashkumar/dicom. Nothing may panic; the
// result is an error or a SEG that parses, holds as many frames as it says,
// and sets exactly the labelled voxels' bits.
func FuzzSeriesToSEG(f *testing.F) {
	add := func(files [][]byte) {
		var args [4][]byte
		copy(args[:], files)
		for i := range args {
			if args[i] == nil {
				args[i] = []byte{}
			}
		}
		f.Add(args[0], args[1], args[2], args[3])
	}
	explicit := seriesFiles(f, "--step", "40,40,50", "--seed", "1")
	if len(explicit) != 4 {
		f.Fatalf("seed series has %d instances, want 4", len(explicit))
	}
	add(explicit)
	add(seriesFiles(f, "--step", "40,40,50", "--seed", "2", "--bits", "8", "--signed", "--intercept", "100", "--plane", "sagittal", "--transfer-syntax", "implicit"))
	add(seriesFiles(f, "--step", "40,40,60", "--seed", "3", "--plane", "oblique", "--slope", "2", "--intercept", "-100")[:2])
	add(seriesFiles(f, "--step", "40,40,50", "--seed", "4", "--enhanced"))
	reported := make([][]byte, 4)
	for i, b := range explicit {
		reported[i] = reportedCase(f, b)
	}
	add(reported)

	f.Fuzz(func(t *testing.T, a, b, c, d []byte) {
		seriesToSEG(t, a, b, c, d)
	})
}

// seriesToSEG is FuzzSeriesToSEG's path; it returns the SEG, or nil where
// the input was refused on the way.
func seriesToSEG(t *testing.T, files ...[]byte) *Result {
	var insts []*volume.Instance
	for _, data := range files {
		if len(data) == 0 {
			continue
		}
		in, err := volume.ParseInstance(data)
		if err != nil {
			if !errors.Is(err, volume.ErrInvalidSeries) {
				t.Fatalf("ParseInstance error %q does not wrap ErrInvalidSeries", err)
			}
			continue
		}
		insts = append(insts, in)
	}
	if len(insts) == 0 {
		return nil
	}
	v, err := volume.Assemble(insts, volume.Limits{MaxVoxels: 1 << 18, MaxBytes: 1 << 20})
	if err != nil {
		if !errors.Is(err, volume.ErrInvalidSeries) {
			t.Fatalf("Assemble error %q does not wrap ErrInvalidSeries", err)
		}
		return nil
	}
	var sum float64
	for _, x := range v.Data {
		sum += float64(x)
	}
	mean := sum / float64(len(v.Data))
	labels := make([]uint8, len(v.Data))
	labelled := 0
	for i, x := range v.Data {
		if float64(x) > mean {
			labels[i] = 1
			labelled++
		}
	}
	uid := 0
	res, err := Encode(v, labels, []Segment{{
		Label: 1, Name: "Above mean", RGB: [3]uint8{255, 0, 0},
		Category: Code{"91723000", "SCT", "Anatomical Structure"},
		Type:     Code{"12738006", "SCT", "Brain"},
	}}, Options{
		AlgorithmName: "fuzz", AlgorithmVersion: "1",
		Now:    func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
		NewUID: func() string { uid++; return "1.2.826.0.1.3680043.8.498.7." + strconv.Itoa(uid) },
	})
	if err != nil {
		return nil
	}
	checkSEG(t, res, v, labelled)
	return res
}

// TestSeriesToSEG_Seeds checks that FuzzSeriesToSEG's generated seeds go
// the whole way to a SEG, so that the fuzzer starts from there: one frame
// per slice with a voxel above the mean.
func TestSeriesToSEG_Seeds(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"classic", []string{"--step", "40,40,50", "--seed", "1"}},
		{"enhanced", []string{"--step", "40,40,50", "--seed", "4", "--enhanced"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if res := seriesToSEG(t, seriesFiles(t, tt.args...)...); res == nil || res.Frames != 4 {
				t.Fatalf("SEG = %+v, want one of 4 frames", res)
			}
		})
	}
}

// checkSEG parses a SEG back and checks its frame count, size and bits.
func checkSEG(t *testing.T, res *Result, v *volume.Volume, labelled int) {
	t.Helper()
	ds, err := dicom.Parse(bytes.NewReader(res.Bytes), int64(len(res.Bytes)), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		t.Fatalf("the SEG does not parse: %v", err)
	}
	intOf := func(tg tag.Tag) int {
		e, err := ds.FindElementByTag(tg)
		if err != nil {
			t.Fatalf("the SEG has no %v", tg)
		}
		switch vals := e.Value.GetValue().(type) {
		case []int:
			return vals[0]
		case []string:
			n, err := strconv.Atoi(vals[0])
			if err != nil {
				t.Fatalf("%v = %q", tg, vals[0])
			}
			return n
		}
		t.Fatalf("%v has value %v", tg, e.Value)
		return 0
	}
	if got := intOf(tag.NumberOfFrames); got != res.Frames || got < 1 {
		t.Fatalf("NumberOfFrames %d, Result.Frames %d", got, res.Frames)
	}
	if r, c := intOf(tag.Rows), intOf(tag.Columns); r != v.Rows || c != v.Cols {
		t.Fatalf("SEG is %dx%d, volume %dx%d", c, r, v.Cols, v.Rows)
	}
	pf, err := ds.FindElementByTag(tag.PerFrameFunctionalGroupsSequence)
	if err != nil {
		t.Fatal("the SEG has no PerFrameFunctionalGroupsSequence")
	}
	if items, _ := pf.Value.GetValue().([]*dicom.SequenceItemValue); len(items) != res.Frames {
		t.Fatalf("%d per-frame items for %d frames", len(items), res.Frames)
	}
	pd, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		t.Fatal("the SEG has no PixelData")
	}
	info, ok := pd.Value.GetValue().(dicom.PixelDataInfo)
	if !ok {
		t.Fatalf("PixelData holds %T", pd.Value.GetValue())
	}
	want, err := pixelDataLength(res.Frames, v.Rows, v.Cols, 1)
	if err != nil || len(info.UnprocessedValueData) != want {
		t.Fatalf("PixelData of %d bytes, %d frames of %dx%d need %d (%v)", len(info.UnprocessedValueData), res.Frames, v.Cols, v.Rows, want, err)
	}
	set := 0
	for _, x := range info.UnprocessedValueData {
		set += bits.OnesCount8(x)
	}
	if set != labelled {
		t.Fatalf("the SEG sets %d bits for %d labelled voxels", set, labelled)
	}
	if !slices.Equal(res.Segments, []int{1}) {
		t.Fatalf("segments %v", res.Segments)
	}
}
