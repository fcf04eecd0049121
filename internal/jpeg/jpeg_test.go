package jpeg

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The committed codestreams are 46 columns by 55 rows (testdata/README.md).
const testRows, testCols = 55, 46

func readCodestream(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// segmentAt returns the offset of the first marker m (FF m) at a segment
// boundary of a codestream, walking the segments from SOI.
func segmentAt(t testing.TB, b []byte, m byte) int {
	t.Helper()
	for pos := 2; pos+4 <= len(b); {
		if b[pos] != 0xff {
			t.Fatalf("no marker at %d", pos)
		}
		if b[pos+1] == m {
			return pos
		}
		pos += 2 + (int(b[pos+2])<<8 | int(b[pos+3]))
	}
	t.Fatalf("no marker FF %02X", m)
	return 0
}

func TestDecode_Committed(t *testing.T) {
	tests := []struct {
		file      string
		precision int
	}{
		{"baseline8.jpg", 8},
		{"extended12.jpg", 12},
		{"sv1-12.jpg", 16}, // DCMTK codes 16-bit samples in 16 bits
		{"sv7-16.jpg", 16},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := readCodestream(t, tt.file)
			dst := make([]uint16, testRows*testCols)
			p, err := Decode(b, testRows, testCols, dst)
			if err != nil || p != tt.precision {
				t.Fatalf("precision %d, error %v; want %d", p, err, tt.precision)
			}
			var nonzero int
			for _, v := range dst {
				if v != 0 {
					nonzero++
				}
				if int(v) >= 1<<p {
					t.Fatalf("sample %d does not fit %d bits", v, p)
				}
			}
			if nonzero < len(dst)/4 {
				t.Fatalf("only %d of %d samples are not 0: not a brain slice", nonzero, len(dst))
			}

			// Tolerated: padding after EOI, a missing EOI.
			for name, v := range map[string][]byte{
				"padding after EOI": append(bytes.Clone(b), 0, 0, 0xff, 0xff, 0),
				"no EOI":            b[:len(b)-2],
				"no EOI, padded":    append(bytes.Clone(b[:len(b)-2]), 0),
			} {
				got := make([]uint16, len(dst))
				if _, err := Decode(v, testRows, testCols, got); err != nil {
					t.Errorf("%s: %v", name, err)
				} else if !slicesEqual(got, dst) {
					t.Errorf("%s: decodes differently", name)
				}
			}
		})
	}
}

func slicesEqual(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecode_Rejects(t *testing.T) {
	baseline := readCodestream(t, "baseline8.jpg")
	lossless := readCodestream(t, "sv1-12.jpg")
	// with returns a copy of b with bytes at off replaced.
	with := func(b []byte, off int, v ...byte) []byte {
		c := bytes.Clone(b)
		copy(c[off:], v)
		return c
	}
	sof0, sof3 := segmentAt(t, baseline, markerSOF0), segmentAt(t, lossless, markerSOF3)
	sosB := segmentAt(t, baseline, markerSOS)
	tests := []struct {
		name        string
		src         []byte
		rows, cols  int
		wantErr     string
		unsupported bool
	}{
		{name: "empty", src: nil, wantErr: "does not start with the SOI marker"},
		{name: "not JPEG", src: []byte("DICM and more"), wantErr: "does not start with the SOI marker"},
		{name: "JPEG-LS", src: readCodestream(t, "jpegls.jpg"), wantErr: "JPEG-LS codestream", unsupported: true},
		{name: "progressive", src: with(baseline, sof0+1, markerSOF2), wantErr: "progressive DCT (SOF2)", unsupported: true},
		{name: "arithmetic", src: with(baseline, sof0+1, 0xc9), wantErr: "arithmetic-coded JPEG", unsupported: true},
		{name: "hierarchical", src: with(baseline, sof0+1, 0xc5), wantErr: "hierarchical JPEG", unsupported: true},
		{name: "three components", src: with(baseline, sof0+9, 3), wantErr: "3 components; colour JPEG is not an MR image", unsupported: true},
		{name: "rows differ from the header", src: baseline, rows: testRows + 1, wantErr: "frame is 46x55 pixels, the DICOM header says 46x56"},
		{name: "columns differ from the header", src: baseline, cols: testCols - 1, wantErr: "frame is 46x55 pixels, the DICOM header says 45x55"},
		{name: "huge declared size", src: with(baseline, sof0+5, 0xff, 0xff, 0xff, 0xff), wantErr: "frame is 65535x65535 pixels, the DICOM header says 46x55"},
		{name: "baseline of 12 bits", src: with(baseline, sof0+4, 12), wantErr: "baseline frame (SOF0) of precision 12"},
		{name: "lossless of 17 bits", src: with(lossless, sof3+4, 17), wantErr: "lossless frame (SOF3) of precision 17"},
		{name: "truncated in the headers", src: baseline[:sosB-3], wantErr: "runs past the"},
		{name: "truncated before the scan", src: baseline[:sosB], wantErr: "before any scan"},
		{name: "baseline truncated in the scan", src: baseline[:len(baseline)/2], wantErr: "entropy-coded data ends"},
		{name: "lossless truncated in the scan", src: lossless[:len(lossless)/2], wantErr: "entropy-coded data ends"},
		{name: "baseline scan of garbage", src: append(bytes.Clone(baseline[:sosB+10]), bytes.Repeat([]byte{0xfe, 0x01}, 400)...), wantErr: "block"},
		{name: "segment length past the end", src: with(baseline, 4, 0xff, 0xff), wantErr: "runs past the"},
		{name: "scan before frame", src: append([]byte{0xff, 0xd8}, baseline[sosB:]...), wantErr: "scan (SOS) before the frame header"},
		{name: "restart markers missing", src: append([]byte{0xff, 0xd8, 0xff, markerDRI, 0, 4, 0, 3}, baseline[2:]...), wantErr: "restart marker RST0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, cols := testRows, testCols
			if tt.rows != 0 {
				rows = tt.rows
			}
			if tt.cols != 0 {
				cols = tt.cols
			}
			_, err := Decode(tt.src, rows, cols, make([]uint16, rows*cols))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrUnsupported) != tt.unsupported {
				t.Errorf("errors.Is(%v, ErrUnsupported) = %v", err, !tt.unsupported)
			}
		})
	}
	t.Run("dst too small", func(t *testing.T) {
		if _, err := Decode(baseline, testRows, testCols, make([]uint16, 10)); err == nil {
			t.Fatal("no error")
		}
	})
}

// FuzzDecode: codestreams come from the network; none may panic the
// decoder, or make it write outside dst.
func FuzzDecode(f *testing.F) {
	for _, n := range []string{"baseline8.jpg", "extended12.jpg", "sv1-12.jpg", "sv7-16.jpg", "jpegls.jpg"} {
		f.Add(readCodestream(f, n), uint16(testRows), uint16(testCols))
	}
	f.Fuzz(func(t *testing.T, src []byte, rows, cols uint16) {
		r, c := int(rows%128)+1, int(cols%128)+1
		if bytes.HasPrefix(src, []byte{0xff, 0xd8}) && len(src) > 0 && rows == testRows && cols == testCols {
			r, c = testRows, testCols
		}
		dst := make([]uint16, r*c+1)
		dst[r*c] = 0xbeef
		p, err := Decode(src, r, c, dst[:r*c])
		if dst[r*c] != 0xbeef {
			t.Fatal("wrote past dst")
		}
		if err == nil && (p < 2 || p > 16) {
			t.Fatalf("precision %d without error", p)
		}
	})
}
