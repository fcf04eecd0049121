package volume

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseInstance_Enhanced fuzzes the enhanced multi-frame path (functional
// groups, frames) from makeseries.py's Enhanced MR files.
func FuzzParseInstance_Enhanced(f *testing.F) {
	for _, args := range [][]string{
		{"--step", "40", "--enhanced", "--shuffle", "--slope", "2"},
		{"--step", "40,45,50", "--enhanced", "--enhanced-groups", "perframe", "--plane", "oblique", "--bits", "8"},
		{"--step", "45", "--enhanced", "--transfer-syntax", "implicit", "--plane", "sagittal"},
	} {
		dir, _, _ := makeSeries(f, args...)
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != 1 {
			f.Fatalf("enhanced series: %v, %d files", err, len(entries))
		}
		b, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := ParseInstance(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSeries) {
				t.Fatalf("error %q does not wrap ErrInvalidSeries", err)
			}
			return
		}
		for _, fr := range in.Frames {
			if got := len(fr.Pixels()); got != fr.Rows*fr.Cols {
				t.Fatalf("frame %d: Pixels() has %d values for %dx%d", fr.Frame, got, fr.Cols, fr.Rows)
			}
		}
		if _, err := Assemble([]*Instance{in}, Limits{}); err != nil && !errors.Is(err, ErrInvalidSeries) {
			t.Fatalf("Assemble error %q does not wrap ErrInvalidSeries", err)
		}
	})
}
