package codec

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/volume"
)

// TestMain makes the test binary able to serve as a Pool's child: the pool
// re-executes os.Executable(), which here is this test binary.
func TestMain(m *testing.M) {
	RunIfChild()
	os.Exit(m.Run())
}

func newTestPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	p, err := NewPool(zerolog.Nop(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// parseDir parses every .dcm file in dir, keyed by file name (compress.py
// keeps the names of the files it converts).
func parseDir(t testing.TB, p volume.Parser, dir string) map[string]*volume.Instance {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*volume.Instance{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".dcm") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		in, err := p.ParseInstance(context.Background(), data)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out[e.Name()] = in
	}
	if len(out) == 0 {
		t.Fatalf("no DICOM files in %s", dir)
	}
	return out
}

// planePixels returns every image plane's modality values, in file name
// then frame order.
func planePixels(m map[string]*volume.Instance) [][]float32 {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var out [][]float32
	for _, n := range names {
		in := m[n]
		if len(in.Frames) == 0 {
			out = append(out, in.Pixels())
			continue
		}
		for _, fr := range in.Frames {
			out = append(out, fr.Pixels())
		}
	}
	return out
}

// difference compares decoded planes with the uncompressed ones: the
// largest absolute difference, the root mean square error, and the range of
// the uncompressed values.
func difference(t *testing.T, got, want [][]float32) (maxAbs, rms, valueRange float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d planes, want %d", len(got), len(want))
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	var sum float64
	n := 0
	for k := range want {
		if len(got[k]) != len(want[k]) {
			t.Fatalf("plane %d has %d pixels, want %d", k, len(got[k]), len(want[k]))
		}
		for i, w := range want[k] {
			d := math.Abs(float64(got[k][i]) - float64(w))
			maxAbs = max(maxAbs, d)
			sum += d * d
			n++
			lo, hi = min(lo, float64(w)), max(hi, float64(w))
		}
	}
	return maxAbs, math.Sqrt(sum / float64(n)), hi - lo
}

func TestPool_DecodesLikeTheUncompressedSeries(t *testing.T) {
	pool := newTestPool(t, Config{})
	parser := volume.Parser{Decoder: pool}
	type row struct {
		name   string
		syntax string
		args   []string
		// maxRMS is the largest root mean square error allowed, as a
		// fraction of the value range; 0 means exactly equal.
		maxRMS float64
	}
	rows := []row{
		{name: "J2K lossless by gdcmconv", syntax: "j2k"},
		{name: "J2K lossless, 3 fragments per frame, empty offset table", syntax: "j2k", args: []string{"--fragments", "3", "--no-bot"}},
		{name: "J2K lossless by opj_compress", syntax: "j2k-raw"},
		{name: "HTJ2K lossless by ojph_compress", syntax: "htj2k"},
		{name: "J2K lossy by gdcmconv", syntax: "j2k-lossy", maxRMS: 0.02},
		{name: "HTJ2K lossy by ojph_compress", syntax: "htj2k-lossy", maxRMS: 0.02},
	}
	series := []struct {
		name string
		args []string
		rows []row
	}{
		{"classic 16-bit, 12 stored", []string{"--step", "4", "--seed", "11"}, rows},
		{"enhanced MR multi-frame", []string{"--step", "4", "--seed", "12", "--enhanced"}, rows},
		{"signed, 12 of 16 bits", []string{"--step", "4", "--seed", "13", "--signed", "--intercept", "100", "--bits-stored", "12"}, []row{
			{name: "J2K lossless by gdcmconv", syntax: "j2k"},
			// PS3.5 8.2.4: the codestream says unsigned 16-bit (the
			// two's complement patterns), the header signed 12-bit; the
			// header wins.
			{name: "J2K codestream unsigned 16-bit under a signed 12-bit header", syntax: "j2k-raw", args: []string{"--sign", "u", "--precision", "16"}},
			{name: "HTJ2K lossless by ojph_compress", syntax: "htj2k"},
		}},
		{"8-bit", []string{"--step", "4", "--seed", "14", "--bits", "8"}, []row{
			{name: "J2K lossless by gdcmconv", syntax: "j2k"},
			{name: "J2K codestream of precision 12 under an 8-bit header", syntax: "j2k-raw", args: []string{"--precision", "12"}},
		}},
	}
	for _, s := range series {
		t.Run(s.name, func(t *testing.T) {
			src := fixture.MakeSeries(t, false, s.args...)
			want := planePixels(parseDir(t, volume.Parser{}, src.Dir))
			for _, r := range s.rows {
				t.Run(r.name, func(t *testing.T) {
					dir := fixture.Compress(t, src.Dir, r.syntax, r.args...)
					start := time.Now()
					got := planePixels(parseDir(t, parser, dir))
					took := time.Since(start)
					maxAbs, rms, span := difference(t, got, want)
					switch {
					case r.maxRMS == 0 && maxAbs != 0:
						t.Errorf("lossless decoding differs from the uncompressed pixels by up to %g", maxAbs)
					case r.maxRMS > 0 && rms > r.maxRMS*span:
						t.Errorf("lossy decoding: RMS error %.3g is over %.3g of the value range %g", rms, r.maxRMS, span)
					case r.maxRMS > 0 && maxAbs == 0:
						t.Errorf("lossy decoding equals the source exactly: the series was not compressed lossily")
					}
					t.Logf("%d planes in %v; largest difference %g, RMS %.3g (value range %g)", len(got), took, maxAbs, rms, span)
				})
			}
		})
	}
}
