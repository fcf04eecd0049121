package dicomseg

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/volume"
)

// systemPython is Debian's interpreter, the one with pydicom and numpy.
const systemPython = "/usr/bin/python3"

// readSegScript is the independent SEG reader, relative to this package.
const readSegScript = "../../testdata/tools/readseg.py"

// geometry is a test grid: size, spacing and orientation.
type geometry struct {
	cols, rows, depth int
	spacing           [3]float64
	origin            [3]float64
	// row and col are IOP[0:3] and IOP[3:6]; the slice direction is their cross product.
	row, col [3]float64
}

var (
	axial = geometry{
		cols: 16, rows: 12, depth: 5,
		spacing: [3]float64{0.9375, 0.9375, 3},
		origin:  [3]float64{-120.5, -98.25, 12.5},
		row:     [3]float64{1, 0, 0}, col: [3]float64{0, 1, 0},
	}
	sagittal = geometry{
		cols: 10, rows: 8, depth: 6,
		spacing: [3]float64{1, 1.2, 1.5},
		origin:  [3]float64{-30, -110.3, 95.7},
		row:     [3]float64{0, 1, 0}, col: [3]float64{0, 0, -1},
	}
	oblique = geometry{
		cols: 9, rows: 11, depth: 4,
		spacing: [3]float64{0.8, 0.75, 2.2},
		origin:  [3]float64{-101.123456, 87.654321, -3.5},
		// Rotated about an oblique axis: unit vectors, orthogonal.
		row: [3]float64{0.9961946980917455, 0, -0.08715574274765817},
		col: [3]float64{-0.0151344359276, 0.984807753012208, -0.172987393925},
	}
	odd = geometry{
		cols: 7, rows: 5, depth: 3,
		spacing: [3]float64{1.1, 0.7, 5},
		origin:  [3]float64{0, 0, 0},
		row:     [3]float64{1, 0, 0}, col: [3]float64{0, 0, -1},
	}
)

// newVolume returns a volume on g with a header of patient and study
// attributes; AccessionNumber is absent so that the Type 2 path is exercised.
func newVolume(t testing.TB, g geometry) *volume.Volume {
	t.Helper()
	normal := cross(g.row, g.col)
	v := &volume.Volume{
		Geometry: volume.Geometry{
			Cols: g.cols, Rows: g.rows, Depth: g.depth,
			Spacing:   g.spacing,
			Origin:    g.origin,
			Direction: [3][3]float64{g.row, g.col, normal},
		},
		SeriesInstanceUID:   "1.2.826.0.1.3680043.8.498.1001",
		FrameOfReferenceUID: "1.2.826.0.1.3680043.8.498.1002",
		Modality:            "MR",
	}
	for k := range g.depth {
		var p [3]float64
		for a := range 3 {
			// Round like a DS the scanner wrote, so positions have few digits.
			p[a] = math.Round((g.origin[a]+float64(k)*g.spacing[2]*normal[a])*1e6) / 1e6
		}
		v.Slices = append(v.Slices, volume.Slice{
			SOPInstanceUID: fmt.Sprintf("1.2.826.0.1.3680043.8.498.2%03d", k+1),
			SOPClassUID:    "1.2.840.10008.5.1.4.1.1.4",
			Position:       p,
		})
	}
	v.Header = &dicom.Dataset{}
	for _, e := range []struct {
		t tag.Tag
		v []string
	}{
		{tag.PatientName, []string{"Doe^Jane"}},
		{tag.PatientID, []string{"PID-0042"}},
		{tag.PatientBirthDate, []string{"19700101"}},
		{tag.PatientSex, []string{"F"}},
		{tag.StudyInstanceUID, []string{"1.2.826.0.1.3680043.8.498.1000"}},
		{tag.StudyDate, []string{"20240102"}},
		{tag.StudyTime, []string{"101112"}},
		{tag.ReferringPhysicianName, []string{""}},
		{tag.StudyID, []string{"S1"}},
		{tag.SeriesInstanceUID, []string{v.SeriesInstanceUID}},
		{tag.Modality, []string{"MR"}},
	} {
		el, err := dicom.NewElement(e.t, e.v)
		if err != nil {
			t.Fatalf("header element %v: %v", e.t, err)
		}
		v.Header.Elements = append(v.Header.Elements, el)
	}
	return v
}

func cross(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}

// testSegments returns n segments labelled 1..n with distinct colours.
func testSegments(n int) []Segment {
	segs := make([]Segment, n)
	for i := range segs {
		segs[i] = Segment{
			Label:    i + 1,
			Name:     fmt.Sprintf("Structure %d", i+1),
			Category: Code{"123037004", "SCT", "Anatomical Structure"},
			Type:     Code{fmt.Sprintf("%d", 10000+i), "SCT", fmt.Sprintf("Thing %d", i+1)},
			RGB:      [3]uint8{uint8(40 * i), uint8(255 - 20*i), uint8(17 * i * i)},
		}
	}
	return segs
}

// blobLabels fills each label 1..n as a box around its own random centre,
// later labels overwriting earlier ones, and leaves label skip (if > 0) out.
func blobLabels(g geometry, n, skip int, seed uint64) []uint8 {
	r := rand.New(rand.NewPCG(seed, 1))
	labels := make([]uint8, g.cols*g.rows*g.depth)
	for l := 1; l <= n; l++ {
		if l == skip {
			continue
		}
		ci, cj, ck := r.IntN(g.cols), r.IntN(g.rows), r.IntN(g.depth)
		ri, rj, rk := 1+r.IntN(3), 1+r.IntN(3), r.IntN(2)
		for k := max(0, ck-rk); k <= min(g.depth-1, ck+rk); k++ {
			for j := max(0, cj-rj); j <= min(g.rows-1, cj+rj); j++ {
				for i := max(0, ci-ri); i <= min(g.cols-1, ci+ri); i++ {
					labels[i+g.cols*(j+g.rows*k)] = uint8(l)
				}
			}
		}
	}
	return labels
}

func testOptions() Options {
	return Options{
		AlgorithmName:    "brain-unet",
		AlgorithmVersion: "2.1.0",
		ContentCreator:   "Segbridge^Bot",
		Now:              func() time.Time { return time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC) },
	}
}

func TestEncode_Valid(t *testing.T) {
	full := func(g geometry) []uint8 {
		l := make([]uint8, g.cols*g.rows*g.depth)
		for i := range l {
			l[i] = 1
		}
		return l
	}
	tests := []struct {
		name   string
		g      geometry
		segs   []Segment
		labels func(g geometry) []uint8
	}{
		{"Axial_OneSegment", axial, testSegments(1), func(g geometry) []uint8 { return blobLabels(g, 1, 0, 1) }},
		{"Axial_TwelveSegments", axial, testSegments(12), func(g geometry) []uint8 { return blobLabels(g, 12, 0, 2) }},
		{"Sagittal_TwelveSegments", sagittal, testSegments(12), func(g geometry) []uint8 { return blobLabels(g, 12, 5, 3) }},
		{"Oblique_ThreeSegments", oblique, testSegments(3), func(g geometry) []uint8 { return blobLabels(g, 3, 0, 4) }},
		{"Odd7x5x3_OneSegment", odd, testSegments(1), func(g geometry) []uint8 { return blobLabels(g, 1, 0, 5) }},
		{"Odd7x5x3_TwelveSegments", odd, testSegments(12), func(g geometry) []uint8 { return blobLabels(g, 12, 0, 6) }},
		{"Odd7x5x3_Full", odd, testSegments(1), full},
		{"Odd7x5x3_AllEmpty", odd, testSegments(2), func(g geometry) []uint8 { return make([]uint8, g.cols*g.rows*g.depth) }},
		{"Axial_AllEmptyOneSegment", axial, testSegments(1), func(g geometry) []uint8 { return make([]uint8, g.cols*g.rows*g.depth) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVolume(t, tt.g)
			labels := tt.labels(tt.g)
			res, err := Encode(v, labels, tt.segs, testOptions())
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			path := writeTemp(t, res.Bytes)
			checkDciodvfy(t, path)
			got := readSeg(t, path)
			compareSeg(t, v, labels, tt.segs, res, got)
		})
	}
}

func TestEncode_NonContiguousLabels(t *testing.T) {
	v := newVolume(t, odd)
	segs := testSegments(3)
	segs[0].Label, segs[1].Label, segs[2].Label = 7, 2, 200 // numbered 2, 1, 3
	labels := make([]uint8, odd.cols*odd.rows*odd.depth)
	labels[3], labels[40], labels[100] = 7, 2, 200
	res, err := Encode(v, labels, segs, testOptions())
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if want := []int{2, 7, 200}; fmt.Sprint(res.Segments) != fmt.Sprint(want) {
		t.Errorf("Segments = %v, want %v", res.Segments, want)
	}
	path := writeTemp(t, res.Bytes)
	checkDciodvfy(t, path)
	compareSeg(t, v, labels, segs, res, readSeg(t, path))
}

func TestEncode_Deterministic(t *testing.T) {
	v := newVolume(t, oblique)
	labels := blobLabels(oblique, 3, 0, 9)
	encode := func() *Result {
		t.Helper()
		n := 0
		opts := testOptions()
		opts.NewUID = func() string { n++; return fmt.Sprintf("2.25.%d", n) }
		res, err := Encode(v, labels, testSegments(3), opts)
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		return res
	}
	a, b := encode(), encode()
	if !bytes.Equal(a.Bytes, b.Bytes) {
		t.Error("two encodings with fixed Now and NewUID differ")
	}
	if a.SeriesInstanceUID != "2.25.1" || a.SOPInstanceUID != "2.25.2" {
		t.Errorf("UIDs = %s, %s; want 2.25.1, 2.25.2", a.SeriesInstanceUID, a.SOPInstanceUID)
	}

	// With the default NewUID every call makes new UIDs.
	c, err := Encode(v, labels, testSegments(3), testOptions())
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	d, err := Encode(v, labels, testSegments(3), testOptions())
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if c.SeriesInstanceUID == d.SeriesInstanceUID || c.SOPInstanceUID == d.SOPInstanceUID || c.SeriesInstanceUID == c.SOPInstanceUID {
		t.Errorf("UIDs repeat: %s %s %s %s", c.SeriesInstanceUID, c.SOPInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID)
	}
}

// TestEncode_FileMeta parses the output with the library and checks the file
// meta information and the type 2 attributes copied from an incomplete header.
func TestEncode_FileMeta(t *testing.T) {
	v := newVolume(t, odd)
	res, err := Encode(v, blobLabels(odd, 1, 0, 1), testSegments(1), testOptions())
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	ds, err := dicom.Parse(bytes.NewReader(res.Bytes), int64(len(res.Bytes)), nil, dicom.SkipPixelData())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, tt := range []struct {
		t    tag.Tag
		want string
	}{
		{tag.MediaStorageSOPClassUID, SegmentationStorage},
		{tag.MediaStorageSOPInstanceUID, res.SOPInstanceUID},
		{tag.TransferSyntaxUID, "1.2.840.10008.1.2.1"},
		{tag.ImplementationClassUID, implementationClassUID},
		{tag.ImplementationVersionName, implementationVersionName},
		{tag.SOPInstanceUID, res.SOPInstanceUID},
		{tag.SeriesInstanceUID, res.SeriesInstanceUID},
		{tag.Modality, "SEG"},
		{tag.SeriesNumber, "9000"},
		{tag.ContentLabel, "SEGMENTATION"},
		{tag.ContentDate, "20240506"},
		{tag.ContentTime, "070809"},
		{tag.AccessionNumber, ""},
		{tag.PatientName, "Doe^Jane"},
	} {
		el, err := ds.FindElementByTag(tt.t)
		if err != nil {
			t.Errorf("%s: %v", tag.DebugString(tt.t), err)
			continue
		}
		s, _ := el.Value.GetValue().([]string)
		got := strings.TrimRight(strings.Join(s, `\`), " \x00")
		if got != tt.want {
			t.Errorf("%s = %q, want %q", tag.DebugString(tt.t), got, tt.want)
		}
	}
	if _, err := ds.FindElementByTag(tag.SpecificCharacterSet); err == nil {
		t.Error("SpecificCharacterSet written for an ASCII-only header")
	}
}

func TestEncode_UTF8Header(t *testing.T) {
	v := newVolume(t, odd)
	el, err := v.Header.FindElementByTag(tag.PatientName)
	if err != nil {
		t.Fatal(err)
	}
	el.Value, _ = dicom.NewValue([]string{"Müller^Jürgen"})
	res, err := Encode(v, blobLabels(odd, 1, 0, 1), testSegments(1), testOptions())
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if !bytes.Contains(res.Bytes, []byte("ISO_IR 192")) {
		t.Error("no SpecificCharacterSet ISO_IR 192 for a UTF-8 patient name")
	}
	checkDciodvfy(t, writeTemp(t, res.Bytes))
}

func TestEncode_Errors(t *testing.T) {
	good := func() (*volume.Volume, []uint8, []Segment, Options) {
		return newVolume(t, odd), blobLabels(odd, 2, 0, 1), testSegments(2), testOptions()
	}
	tests := []struct {
		name    string
		mutate  func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options)
		wantErr string
	}{
		{"LabelsTooShort", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { *l = (*l)[1:] }, "labels: 104 voxels"},
		{"UndescribedLabel", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { (*l)[7+7*5*2] = 3 }, "voxel (0,1,2) has value 3"},
		{"NoAlgorithmName", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { o.AlgorithmName = "" }, "AlgorithmName is required"},
		{"NoAlgorithmVersion", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { o.AlgorithmVersion = " " }, "AlgorithmVersion is required"},
		{"BadContentLabel", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { o.ContentLabel = "seg-1" }, "ContentLabel"},
		{"LongSeriesDescription", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) {
			o.SeriesDescription = strings.Repeat("x", 65)
		}, "SeriesDescription"},
		{"NoSegments", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { *s = nil }, "no segments"},
		{"DuplicateLabel", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { (*s)[1].Label = 1 }, "same label 1"},
		{"LabelZero", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { (*s)[0].Label = 0 }, "label 0 not in 1..255"},
		{"NoName", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { (*s)[0].Name = "" }, "name is required"},
		{"NoCategoryMeaning", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { (*s)[0].Category.Meaning = "" }, "category"},
		{"NilHeader", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { v.Header = nil }, "no header"},
		{"NoStudyUID", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { v.Header = &dicom.Dataset{} }, "StudyInstanceUID"},
		{"NoFrameOfReference", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { v.FrameOfReferenceUID = "" }, "FrameOfReferenceUID"},
		{"SliceCount", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { v.Slices = v.Slices[:2] }, "2 slices for depth 3"},
		{"SliceUID", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { v.Slices[1].SOPInstanceUID = "" }, "slice 1"},
		{"ZeroSpacing", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { v.Spacing[2] = 0 }, "spacing[2]"},
		{"WideImage", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { v.Cols = 1 << 32 }, "rows and columns must fit in 16 bits"},
		{"DeepVolume", func(v *volume.Volume, l *[]uint8, s *[]Segment, o *Options) { v.Depth = 1 << 31 }, "depth 2147483648: more slices than a SEG can reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, l, s, o := good()
			tt.mutate(v, &l, &s, &o)
			_, err := Encode(v, l, s, o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Encode error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	t.Run("NilVolume", func(t *testing.T) {
		if _, err := Encode(nil, nil, testSegments(1), testOptions()); err == nil || !strings.Contains(err.Error(), "nil volume") {
			t.Fatalf("Encode error = %v, want nil volume", err)
		}
	})
}

// writeTemp writes b to a file in a per-test directory and returns its path.
func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seg.dcm")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkDciodvfy runs dicom3tools' validator on path, fails on any error line
// and logs the warnings.
func checkDciodvfy(t *testing.T, path string) {
	t.Helper()
	bin, err := exec.LookPath("dciodvfy")
	if err != nil {
		t.Fatal("dciodvfy not found: run make deps")
	}
	out, _ := exec.Command(bin, path).CombinedOutput() // its exit status does not tell errors from warnings
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "Error"), strings.Contains(line, "Abort"):
			t.Errorf("dciodvfy: %s", line)
		case strings.Contains(line, "Warning"):
			t.Logf("dciodvfy: %s", line)
		}
	}
}

// segJSON is what readseg.py writes to seg.json.
type segJSON struct {
	Rows                int    `json:"rows"`
	Cols                int    `json:"cols"`
	NumberOfFrames      int    `json:"number_of_frames"`
	SegmentationType    string `json:"segmentation_type"`
	SOPClassUID         string `json:"sop_class_uid"`
	SOPInstanceUID      string `json:"sop_instance_uid"`
	SeriesInstanceUID   string `json:"series_instance_uid"`
	StudyInstanceUID    string `json:"study_instance_uid"`
	FrameOfReferenceUID string `json:"frame_of_reference_uid"`
	PatientID           string `json:"patient_id"`
	Modality            string `json:"modality"`
	TransferSyntaxUID   string `json:"transfer_syntax_uid"`
	Frames              []struct {
		Segment              int        `json:"segment"`
		IPP                  [3]float64 `json:"ipp"`
		RefSOPInstanceUID    string     `json:"ref_sop_instance_uid"`
		RefSOPClassUID       string     `json:"ref_sop_class_uid"`
		RefFrameNumber       *int       `json:"ref_frame_number"`
		DimensionIndexValues []int      `json:"dimension_index_values"`
	} `json:"frames"`
	Segments []struct {
		Number           int    `json:"number"`
		Label            string `json:"label"`
		AlgorithmType    string `json:"algorithm_type"`
		Category         Code   `json:"category"`
		Type             Code   `json:"type"`
		CIELab           [3]int `json:"cielab"`
		AlgorithmName    string `json:"algorithm_name"`
		AlgorithmVersion string `json:"algorithm_version"`
		AlgorithmFamily  Code   `json:"algorithm_family"`
	} `json:"segments"`
	ReferencedSeries struct {
		UID       string `json:"uid"`
		Instances []struct {
			SOPClassUID    string `json:"sop_class_uid"`
			SOPInstanceUID string `json:"sop_instance_uid"`
		} `json:"instances"`
	} `json:"referenced_series"`
	// pixels[f] is frame f, rows*cols bytes of 0 or 1.
	pixels [][]byte
}

// readSeg decodes path with the independent reader testdata/tools/readseg.py.
func readSeg(t *testing.T, path string) *segJSON {
	t.Helper()
	if _, err := os.Stat(systemPython); err != nil {
		t.Fatalf("%s not found: run make deps (needs python3-pydicom, python3-numpy)", systemPython)
	}
	out := t.TempDir()
	cmd := exec.Command(systemPython, readSegScript, path, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("readseg.py: %v\n%s", err, b)
	}
	b, err := os.ReadFile(filepath.Join(out, "seg.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s segJSON
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("seg.json: %v", err)
	}
	px, err := os.ReadFile(filepath.Join(out, "frames.u8"))
	if err != nil {
		t.Fatal(err)
	}
	npix := s.Rows * s.Cols
	if len(px) != s.NumberOfFrames*npix {
		t.Fatalf("frames.u8: %d bytes, want %d frames of %d", len(px), s.NumberOfFrames, npix)
	}
	for f := range s.NumberOfFrames {
		s.pixels = append(s.pixels, px[f*npix:(f+1)*npix])
	}
	return &s
}

// compareSeg checks what the independent reader got against the input.
func compareSeg(t *testing.T, v *volume.Volume, labels []uint8, segs []Segment, res *Result, got *segJSON) {
	t.Helper()
	for _, c := range []struct{ name, got, want string }{
		{"SOPClassUID", got.SOPClassUID, SegmentationStorage},
		{"SOPInstanceUID", got.SOPInstanceUID, res.SOPInstanceUID},
		{"SeriesInstanceUID", got.SeriesInstanceUID, res.SeriesInstanceUID},
		{"StudyInstanceUID", got.StudyInstanceUID, "1.2.826.0.1.3680043.8.498.1000"},
		{"FrameOfReferenceUID", got.FrameOfReferenceUID, v.FrameOfReferenceUID},
		{"PatientID", got.PatientID, "PID-0042"},
		{"Modality", got.Modality, "SEG"},
		{"SegmentationType", got.SegmentationType, "BINARY"},
		{"TransferSyntaxUID", got.TransferSyntaxUID, "1.2.840.10008.1.2.1"},
		{"ReferencedSeries", got.ReferencedSeries.UID, v.SeriesInstanceUID},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if got.Rows != v.Rows || got.Cols != v.Cols {
		t.Fatalf("size %dx%d, want %dx%d", got.Cols, got.Rows, v.Cols, v.Rows)
	}
	if got.NumberOfFrames != res.Frames || len(got.Frames) != res.Frames {
		t.Fatalf("%d frames (%d described), Result says %d", got.NumberOfFrames, len(got.Frames), res.Frames)
	}
	if len(got.ReferencedSeries.Instances) != len(v.Slices) {
		t.Errorf("%d referenced instances, want %d", len(got.ReferencedSeries.Instances), len(v.Slices))
	} else {
		for k, in := range got.ReferencedSeries.Instances {
			if in.SOPInstanceUID != v.Slices[k].SOPInstanceUID || in.SOPClassUID != v.Slices[k].SOPClassUID {
				t.Errorf("referenced instance %d = %+v, want slice %d", k, in, k)
			}
		}
	}

	// Segments, in label order.
	byLabel := map[int]Segment{}
	for _, s := range segs {
		byLabel[s.Label] = s
	}
	if len(got.Segments) != len(segs) || len(res.Segments) != len(segs) {
		t.Fatalf("%d segments read, %d in Result, want %d", len(got.Segments), len(res.Segments), len(segs))
	}
	for i, gs := range got.Segments {
		want := byLabel[res.Segments[i]]
		if gs.Number != i+1 || gs.Label != want.Name || gs.Category != want.Category || gs.Type != want.Type ||
			gs.CIELab != cieLab(want.RGB) || gs.AlgorithmType != "AUTOMATIC" ||
			gs.AlgorithmName != "brain-unet" || gs.AlgorithmVersion != "2.1.0" ||
			gs.AlgorithmFamily != (Code{"123110", "DCM", "Artificial Intelligence"}) {
			t.Errorf("segment %d = %+v, want %+v", i+1, gs, want)
		}
	}

	// Frames: order, geometry, references, and every voxel.
	sliceOf := map[string]int{}
	for k, s := range v.Slices {
		sliceOf[s.SOPInstanceUID] = k
	}
	npix := v.Cols * v.Rows
	recon := make([]uint8, len(labels))
	nonEmpty := map[[2]int]bool{} // (segment, k) with voxels
	prev := [2]int{0, -1}
	for f, fr := range got.Frames {
		k, ok := sliceOf[fr.RefSOPInstanceUID]
		if !ok {
			t.Fatalf("frame %d references unknown instance %s", f, fr.RefSOPInstanceUID)
		}
		if fr.RefSOPClassUID != v.Slices[k].SOPClassUID {
			t.Errorf("frame %d: referenced class %s, want %s", f, fr.RefSOPClassUID, v.Slices[k].SOPClassUID)
		}
		if fr.IPP != v.Slices[k].Position {
			t.Errorf("frame %d: IPP %v, want exactly %v", f, fr.IPP, v.Slices[k].Position)
		}
		if fmt.Sprint(fr.DimensionIndexValues) != fmt.Sprint([]int{fr.Segment, k + 1}) {
			t.Errorf("frame %d: DimensionIndexValues %v, want [%d %d]", f, fr.DimensionIndexValues, fr.Segment, k+1)
		}
		if cur := [2]int{fr.Segment, k}; cur[0] < prev[0] || cur[0] == prev[0] && cur[1] <= prev[1] {
			t.Errorf("frame %d (segment %d, slice %d) out of order after %v", f, fr.Segment, k, prev)
		} else {
			prev = cur
		}
		if fr.Segment < 1 || fr.Segment > len(res.Segments) {
			t.Fatalf("frame %d: segment %d", f, fr.Segment)
		}
		label := uint8(res.Segments[fr.Segment-1])
		empty := true
		for p, bit := range got.pixels[f] {
			if bit == 0 {
				continue
			}
			empty = false
			if recon[k*npix+p] != 0 {
				t.Fatalf("voxel %d of slice %d set by two segments", p, k)
			}
			recon[k*npix+p] = label
		}
		if empty {
			// Only allowed as the single placeholder frame of an empty segment.
			if k != 0 {
				t.Errorf("frame %d (segment %d, slice %d) is empty", f, fr.Segment, k)
			}
		} else {
			nonEmpty[[2]int{fr.Segment, k}] = true
		}
	}
	for i := range labels {
		if recon[i] != labels[i] {
			t.Fatalf("voxel (%d,%d,%d) = %d, want %d", i%v.Cols, i/v.Cols%v.Rows, i/npix, recon[i], labels[i])
		}
	}
	// Each segment has at least one frame.
	seen := map[int]bool{}
	for _, fr := range got.Frames {
		seen[fr.Segment] = true
	}
	for n := 1; n <= len(segs); n++ {
		if !seen[n] {
			t.Errorf("segment %d has no frame", n)
		}
	}
}
