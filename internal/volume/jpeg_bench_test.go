package volume

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/segbridge/segbridge/internal/fixture"
)

// BenchmarkParseInstance_JPEG parses the whole 181-slice ch2 series (181 x
// 217 pixels a slice) once per op, stored uncompressed and in each JPEG
// syntax: the cost of decoding JPEG in process.
func BenchmarkParseInstance_JPEG(b *testing.B) {
	s16 := fixture.MakeSeries(b, false, "--seed", "51")
	s8 := fixture.MakeSeries(b, false, "--seed", "52", "--bits", "8")
	cases := []struct {
		name, syntax string
		src          *fixture.Series
	}{
		{"uncompressed 16-bit", "", s16},
		{"lossless SV1 16-bit", "jpeg-lossless-sv1", s16},
		{"lossless SV6 16-bit", "jpeg-lossless", s16},
		{"extended 12-bit", "jpeg-extended", s16},
		{"baseline 8-bit", "jpeg-baseline", s8},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			dir := c.src.Dir
			if c.syntax != "" {
				dir = fixture.Compress(b, dir, c.syntax)
			}
			names, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
			files := make([][]byte, len(names))
			for i, n := range names {
				var err error
				if files[i], err = os.ReadFile(n); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				for _, f := range files {
					if _, err := (Parser{}).ParseInstance(b.Context(), f); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(len(files)), "slices")
		})
	}
}
