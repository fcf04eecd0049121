package codec

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/volume"
)

// BenchmarkPool_CH2 parses the whole ch2 series (181 axial slices of
// 181x217, 16-bit) stored as JPEG 2000 lossless by gdcmconv, one op per
// series, with a warm pool of GOMAXPROCS children and 8 files at a time as
// the worker's downloads would; BenchmarkPool_CH2Uncompressed is the same
// series uncompressed.
func BenchmarkPool_CH2(b *testing.B) {
	src := fixture.MakeSeries(b, false, "--plane", "axial", "--seed", "500")
	benchmarkParse(b, fixture.Compress(b, src.Dir, "j2k"))
}

func BenchmarkPool_CH2Uncompressed(b *testing.B) {
	src := fixture.MakeSeries(b, false, "--plane", "axial", "--seed", "500")
	benchmarkParse(b, src.Dir)
}

// BenchmarkPool_CH2JPEGLS is the same series stored as JPEG-LS lossless and
// near-lossless (NEAR 2) by dcmcjpls, decoded by CharLS.
func BenchmarkPool_CH2JPEGLS(b *testing.B) {
	src := fixture.MakeSeries(b, false, "--plane", "axial", "--seed", "500")
	b.Run("lossless", func(b *testing.B) { benchmarkParse(b, dcmcjpls(b, src.Dir, "+el")) })
	b.Run("near-lossless", func(b *testing.B) { benchmarkParse(b, dcmcjpls(b, src.Dir, "+en")) })
}

func benchmarkParse(b *testing.B, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var files [][]byte
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, data)
	}
	pool := newTestPool(b, Config{})
	parser := volume.Parser{Decoder: pool}
	parseAll := func() {
		sem := make(chan struct{}, 8)
		errs := make(chan error, len(files))
		for _, data := range files {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				_, err := parser.ParseInstance(context.Background(), data)
				errs <- err
			}()
		}
		for range files {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	parseAll() // start the children
	b.ResetTimer()
	for b.Loop() {
		parseAll()
	}
	b.ReportMetric(float64(len(files)), "slices")
}
