package jpeg

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/segbridge/segbridge/internal/fixture"
)

// The codestreams of these tests are made by DCMTK's dcmcjpeg (an encoder
// this package shares no code with) from DICOM slices makeseries.py
// reslices from the ch2 MRI, and checked against the uncompressed slices
// (lossless) and against DCMTK's own decoder dcmdjpeg (lossy).

// needTools skips the test when DCMTK is not installed.
func needTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"dcmcjpeg", "dcmdjpeg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: install dcmtk (make deps) to run the DCMTK comparisons", tool)
		}
	}
	if _, err := os.Stat(fixture.Python); err != nil {
		t.Skipf("%s not found: install python3-pydicom (make deps) to generate the test series", fixture.Python)
	}
}

// slice is one DICOM file of a test series: its size and native samples.
type slice struct {
	path       string
	rows, cols int
	samples    []uint16 // little-endian 16-bit or 8-bit pixel data, widened
}

// testSeries makes a series of a few slices with makeseries.py arguments
// args and returns its files, sorted by name.
func testSeries(t testing.TB, args ...string) []slice {
	t.Helper()
	s := fixture.MakeSeries(t, false, append([]string{"--seed", "7"}, args...)...)
	names, err := filepath.Glob(filepath.Join(s.Dir, "*.dcm"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no slices in %s: %v", s.Dir, err)
	}
	sort.Strings(names)
	out := make([]slice, len(names))
	for i, n := range names {
		out[i] = readNative(t, n, s.Truth.Rows, s.Truth.Cols)
	}
	return out
}

// pixelDataTag is (7FE0,0010) in Explicit VR Little Endian, VR O?.
var pixelDataTag = []byte{0xe0, 0x7f, 0x10, 0x00, 'O'}

// pixelData returns the value of the last top-level PixelData element of an
// Explicit VR Little Endian file, and whether its length is undefined
// (encapsulated).
func pixelData(t testing.TB, data []byte) ([]byte, bool) {
	t.Helper()
	i := bytes.LastIndex(data, pixelDataTag)
	if i < 0 || i+12 > len(data) {
		t.Fatal("no PixelData element")
	}
	n := binary.LittleEndian.Uint32(data[i+8:])
	if n == 0xffffffff {
		return data[i+12:], true
	}
	if int(n) > len(data)-i-12 {
		t.Fatalf("PixelData length %d past the end", n)
	}
	return data[i+12 : i+12+int(n)], false
}

// readNative reads the native samples of an uncompressed file.
func readNative(t testing.TB, path string, rows, cols int) slice {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	px, encapsulated := pixelData(t, data)
	if encapsulated {
		t.Fatalf("%s: pixel data is encapsulated", path)
	}
	s := slice{path: path, rows: rows, cols: cols, samples: make([]uint16, rows*cols)}
	switch len(px) / (rows * cols) {
	case 1:
		for i := range s.samples {
			s.samples[i] = uint16(px[i])
		}
	case 2:
		for i := range s.samples {
			s.samples[i] = binary.LittleEndian.Uint16(px[2*i:])
		}
	default:
		t.Fatalf("%s: %d bytes of pixel data for %dx%d", path, len(px), cols, rows)
	}
	return s
}

// fragments returns the fragments of an encapsulated file (after the Basic
// Offset Table).
func fragments(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	px, encapsulated := pixelData(t, data)
	if !encapsulated {
		t.Fatalf("%s: pixel data is not encapsulated", path)
	}
	var items [][]byte
	for len(px) >= 8 {
		tag, n := binary.LittleEndian.Uint32(px), binary.LittleEndian.Uint32(px[4:])
		if tag == 0xe0ddfffe { // sequence delimiter
			break
		}
		if tag != 0xe000fffe || int(n) > len(px)-8 {
			t.Fatalf("%s: bad item %08x of %d bytes", path, tag, n)
		}
		items = append(items, px[8:8+n])
		px = px[8+n:]
	}
	if len(items) < 2 {
		t.Fatalf("%s: %d items", path, len(items))
	}
	return items[1:]
}

// dcmtk runs a DCMTK tool.
func dcmtk(t testing.TB, tool string, args ...string) {
	t.Helper()
	if b, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, b)
	}
}

// encoded is one slice compressed by dcmcjpeg: its codestream, and what
// dcmdjpeg decodes it to.
type encoded struct {
	slice
	codestream []byte
	dcmtk      []uint16
}

// compress encodes every slice with dcmcjpeg options opts, and decodes the
// result back with dcmdjpeg.
func compress(t testing.TB, slices []slice, opts ...string) []encoded {
	t.Helper()
	dir := t.TempDir()
	out := make([]encoded, len(slices))
	for i, s := range slices {
		jpg := filepath.Join(dir, fmt.Sprintf("%d.jpeg.dcm", i))
		raw := filepath.Join(dir, fmt.Sprintf("%d.raw.dcm", i))
		dcmtk(t, "dcmcjpeg", append(append([]string{"-q"}, opts...), s.path, jpg)...)
		dcmtk(t, "dcmdjpeg", "-q", jpg, raw)
		frags := fragments(t, jpg)
		if len(frags) != 1 {
			t.Fatalf("%s: %d fragments", jpg, len(frags))
		}
		out[i] = encoded{slice: s, codestream: frags[0], dcmtk: readNative(t, raw, s.rows, s.cols).samples}
	}
	return out
}

// maxDiff returns the largest |a[i]-b[i]|.
func maxDiff(a, b []uint16) int {
	m := 0
	for i := range a {
		d := int(a[i]) - int(b[i])
		m = max(m, d, -d)
	}
	return m
}

func TestDecode_DCMTKLossless(t *testing.T) {
	needTools(t)
	series := map[string][]slice{
		"12-bit": testSeries(t, "--step", "1,1,45", "--slope", "0.0625"),
		"16-bit": testSeries(t, "--step", "1,1,45", "--bits-stored", "16", "--slope", "0.004"),
		"8-bit":  testSeries(t, "--step", "1,1,45", "--bits", "8"),
	}
	type variant struct {
		name string
		opts []string
		pt   int
	}
	var variants []variant
	for sv := 1; sv <= 7; sv++ {
		variants = append(variants, variant{fmt.Sprintf("+el +sv %d", sv), []string{"+el", "+sv", fmt.Sprint(sv)}, 0})
	}
	for _, pt := range []int{0, 1, 3} {
		variants = append(variants, variant{fmt.Sprintf("+e1 +pt %d", pt), []string{"+e1", "+pt", fmt.Sprint(pt)}, pt})
	}
	variants = append(variants, variant{"+el +sv 7 +pt 2", []string{"+el", "+sv", "7", "+pt", "2"}, 2})
	for name, slices := range series {
		for _, v := range variants {
			t.Run(name+" "+v.name, func(t *testing.T) {
				for _, e := range compress(t, slices, v.opts...) {
					got := make([]uint16, e.rows*e.cols)
					p, err := Decode(e.codestream, e.rows, e.cols, got)
					if err != nil {
						t.Fatalf("%s: %v", e.path, err)
					}
					if d := maxDiff(got, e.dcmtk); d != 0 {
						t.Fatalf("%s: precision %d: differs from dcmdjpeg by up to %d", e.path, p, d)
					}
					// The point transform drops the low pt bits.
					mask := ^uint16(1<<v.pt - 1)
					for i, s := range e.samples {
						if got[i] != s&mask {
							t.Fatalf("%s: precision %d: sample %d is %d, the uncompressed slice's %d (masked %d)", e.path, p, i, got[i], s, s&mask)
						}
					}
				}
			})
		}
	}
}

func TestDecode_DCMTKLossy(t *testing.T) {
	needTools(t)
	tests := []struct {
		name          string
		args, opts    []string
		wantPrecision int
	}{
		{"baseline 8-bit +eb", []string{"--bits", "8"}, []string{"+eb"}, 8},
		{"baseline 8-bit +eb +q 50 standard tables", []string{"--bits", "8"}, []string{"+eb", "+q", "50", "-ho"}, 8},
		{"baseline 8-bit +eb +q 100", []string{"--bits", "8"}, []string{"+eb", "+q", "100"}, 8},
		{"extended 12-bit +ee", []string{"--slope", "0.0625"}, []string{"+ee"}, 12},
		{"extended 12-bit +ee +q 100", []string{"--slope", "0.0625"}, []string{"+ee", "+q", "100"}, 12},
		{"extended 8-bit +ee +be", []string{"--bits", "8"}, []string{"+ee", "+be"}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slices := testSeries(t, append([]string{"--step", "1,1,30"}, tt.args...)...)
			worst, worstOrig := 0, 0
			for _, e := range compress(t, slices, tt.opts...) {
				got := make([]uint16, e.rows*e.cols)
				p, err := Decode(e.codestream, e.rows, e.cols, got)
				if err != nil {
					t.Fatalf("%s: %v", e.path, err)
				}
				if p != tt.wantPrecision {
					t.Errorf("precision %d, want %d", p, tt.wantPrecision)
				}
				worst = max(worst, maxDiff(got, e.dcmtk))
				worstOrig = max(worstOrig, maxDiff(got, e.samples))
			}
			t.Logf("%d slices: max difference from dcmdjpeg %d, from the uncompressed slice %d", len(slices), worst, worstOrig)
			if worst > 1 {
				t.Errorf("decoded samples differ from dcmdjpeg's by up to %d, want at most 1", worst)
			}
		})
	}
}
