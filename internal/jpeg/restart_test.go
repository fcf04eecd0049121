package jpeg

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// spliceFrame returns DICOM file template (from dcmcjpeg, encapsulated) with
// its one frame replaced by codestream, for dcmdjpeg to decode.
func spliceFrame(t testing.TB, template []byte, codestream []byte) []byte {
	t.Helper()
	px, encapsulated := pixelData(t, template)
	if !encapsulated {
		t.Fatal("template is not encapsulated")
	}
	head := template[:len(template)-len(px)]
	out := append([]byte{}, head...)
	item := func(b []byte) {
		out = binary.LittleEndian.AppendUint32(out, 0xe000fffe)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(b)))
		out = append(out, b...)
	}
	item(nil)
	if len(codestream)%2 == 1 {
		codestream = append(codestream, 0)
	}
	item(codestream)
	out = binary.LittleEndian.AppendUint32(out, 0xe0ddfffe)
	return binary.LittleEndian.AppendUint32(out, 0)
}

// dcmtkDecode has dcmdjpeg decode codestream in the DICOM file template.
func dcmtkDecode(t testing.TB, template, codestream []byte, rows, cols int) []uint16 {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "out.dcm")
	if err := os.WriteFile(in, spliceFrame(t, template, codestream), 0o644); err != nil {
		t.Fatal(err)
	}
	dcmtk(t, "dcmdjpeg", "-q", in, out)
	return readNative(t, out, rows, cols).samples
}

func TestDecode_RestartIntervals(t *testing.T) {
	needTools(t)
	s8 := testSeries(t, "--step", "1,1,90", "--bits", "8")[1]
	s16 := testSeries(t, "--step", "1,1,90", "--bits-stored", "16", "--slope", "0.004")[1]
	s12 := testSeries(t, "--step", "1,1,90", "--slope", "0.0625")[1]
	template := func(s slice, opts ...string) []byte {
		f := filepath.Join(t.TempDir(), "t.dcm")
		dcmtk(t, "dcmcjpeg", append(append([]string{"-q"}, opts...), s.path, f)...)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("lossless", func(t *testing.T) {
		tmpl := template(s16, "+el")
		for _, tt := range []struct {
			s                slice
			p, sv, pt, lines int
		}{
			{s16, 16, 1, 0, 1},
			{s16, 16, 4, 0, 7},
			{s16, 16, 6, 0, 16},
			{s16, 16, 7, 2, 5},
			{s8, 8, 5, 0, 3},
			{s8, 8, 2, 1, 100},
			{s8, 8, 3, 0, 0},
		} {
			t.Run(fmt.Sprintf("P%d SV%d Pt%d restart every %d lines", tt.p, tt.sv, tt.pt, tt.lines), func(t *testing.T) {
				cs := encodeLossless(tt.s.samples, tt.s.rows, tt.s.cols, tt.p, tt.sv, tt.pt, tt.lines)
				got := make([]uint16, tt.s.rows*tt.s.cols)
				if _, err := Decode(cs, tt.s.rows, tt.s.cols, got); err != nil {
					t.Fatal(err)
				}
				mask := ^uint16(1<<tt.pt - 1)
				for i, v := range tt.s.samples {
					if got[i] != v&mask {
						t.Fatalf("sample %d is %d, want %d", i, got[i], v&mask)
					}
				}
				if d := maxDiff(got, dcmtkDecode(t, tmpl, cs, tt.s.rows, tt.s.cols)); d != 0 {
					t.Fatalf("differs from dcmdjpeg by up to %d", d)
				}
			})
		}
	})

	t.Run("SSSS=16 difference", func(t *testing.T) {
		// Alternating 0 and 32768 makes every difference after the first
		// -32768, coded as category 16 with no extra bits.
		rows, cols := 9, 10
		samples := make([]uint16, rows*cols)
		for i := range samples {
			samples[i] = uint16((i % 2) * 32768)
		}
		cs := encodeLossless(samples, rows, cols, 16, 1, 0, 3)
		got := make([]uint16, len(samples))
		if _, err := Decode(cs, rows, cols, got); err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(got, samples); d != 0 {
			t.Fatalf("differs by up to %d", d)
		}
	})

	t.Run("DCT", func(t *testing.T) {
		var fine, coarse [64]int
		for i := range fine {
			fine[i], coarse[i] = 1+i/16, 4+i
		}
		for _, tt := range []struct {
			name   string
			s      slice
			p      int
			q      [64]int
			q16    bool
			blocks int
			opts   []string
		}{
			{"8-bit, restart every block", s8, 8, fine, false, 1, []string{"+eb"}},
			{"8-bit, restart every 13 blocks", s8, 8, coarse, false, 13, []string{"+eb"}},
			{"12-bit, 16-bit DQT, restart every 7 blocks", s12, 12, fine, true, 7, []string{"+ee"}},
			{"12-bit, no restart", s12, 12, coarse, true, 0, []string{"+ee"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				cs := encodeDCT(tt.s.samples, tt.s.rows, tt.s.cols, tt.p, tt.q, tt.q16, tt.blocks)
				got := make([]uint16, tt.s.rows*tt.s.cols)
				if _, err := Decode(cs, tt.s.rows, tt.s.cols, got); err != nil {
					t.Fatal(err)
				}
				ref := dcmtkDecode(t, template(tt.s, tt.opts...), cs, tt.s.rows, tt.s.cols)
				d, orig := maxDiff(got, ref), maxDiff(got, tt.s.samples)
				t.Logf("max difference from dcmdjpeg %d, from the uncompressed slice %d", d, orig)
				if d > 1 {
					t.Fatalf("differs from dcmdjpeg by up to %d", d)
				}
			})
		}
	})
}
