package dicomseg

import "testing"

func BenchmarkEncode_Brain(b *testing.B) {
	g := geometry{
		cols: 256, rows: 256, depth: 160,
		spacing: [3]float64{1, 1, 1},
		row:     [3]float64{1, 0, 0}, col: [3]float64{0, 1, 0},
	}
	v := newVolume(b, g)
	labels := make([]uint8, g.cols*g.rows*g.depth)
	for i := range labels {
		// 12 labels in bands, so every segment is on every slice.
		labels[i] = uint8(i/g.cols%13) % 13
	}
	segs := testSegments(12)
	b.ResetTimer()
	for b.Loop() {
		res, err := Encode(v, labels, segs, testOptions())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(res.Bytes))/1e6, "MB")
		b.ReportMetric(float64(res.Frames), "frames")
	}
}
