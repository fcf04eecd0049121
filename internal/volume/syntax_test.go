package volume

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/internal/fixture"
)

func TestTransferSyntaxDecoding(t *testing.T) {
	tests := []struct {
		ts   string
		want Decoding
	}{
		{"1.2.840.10008.1.2", DecodeNative},
		{"1.2.840.10008.1.2.1", DecodeNative},
		{"1.2.840.10008.1.2.2", DecodeNative},
		{"1.2.840.10008.1.2.1.99", DecodeInProcess},
		{"1.2.840.10008.1.2.5", DecodeInProcess},
		{"1.2.840.10008.1.2.4.90", DecodeFrames},
		{"1.2.840.10008.1.2.4.91", DecodeFrames},
		{"1.2.840.10008.1.2.4.201", DecodeFrames},
		{"1.2.840.10008.1.2.4.202", DecodeFrames},
		{"1.2.840.10008.1.2.4.203", DecodeFrames},
		{"1.2.840.10008.1.2.4.50", DecodeInProcess},
		{"1.2.840.10008.1.2.4.51", DecodeInProcess},
		{"1.2.840.10008.1.2.4.57", DecodeInProcess},
		{"1.2.840.10008.1.2.4.70", DecodeInProcess},
		{"1.2.840.10008.1.2.4.80", DecodeFrames},
		{"1.2.840.10008.1.2.4.81", DecodeFrames},
		// Never sent to Orthanc: JPEG 2000 Part 2, JPIP, MPEG, JPEG XL,
		// retired JPEG processes, anything unknown.
		{"1.2.840.10008.1.2.4.92", DecodeNone},
		{"1.2.840.10008.1.2.4.93", DecodeNone},
		{"1.2.840.10008.1.2.4.94", DecodeNone},
		{"1.2.840.10008.1.2.4.100", DecodeNone},
		{"1.2.840.10008.1.2.4.112", DecodeNone},
		{"1.2.840.10008.1.2.4.53", DecodeNone},
		{"1.2.3.4", DecodeNone},
		{"", DecodeNone},
	}
	for _, tt := range tests {
		if got := TransferSyntaxDecoding(tt.ts); got != tt.want {
			t.Errorf("TransferSyntaxDecoding(%q) = %d, want %d", tt.ts, got, tt.want)
		}
	}
	if got := TransferSyntaxName(tsHTJ2K); got != "High-Throughput JPEG 2000 Image Compression" {
		t.Errorf("name of %s = %q", tsHTJ2K, got)
	}
}

// parseFolder parses every .dcm file of dir with p, keyed by file name.
func parseFolder(t *testing.T, p Parser, dir string) map[string]*Instance {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*Instance{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".dcm") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		in, err := p.ParseInstance(t.Context(), data)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out[e.Name()] = in
	}
	return out
}

func TestParseInstance_InProcessSyntaxesMatchUncompressed(t *testing.T) {
	series := []struct {
		name string
		args []string
	}{
		{"16-bit, 12 stored", []string{"--step", "4", "--seed", "31"}},
		{"8-bit", []string{"--step", "4", "--seed", "32", "--bits", "8"}},
		{"signed", []string{"--step", "4", "--seed", "33", "--signed", "--intercept", "100"}},
		{"enhanced MR", []string{"--step", "4", "--seed", "34", "--enhanced"}},
	}
	syntaxes := []struct {
		name, syntax string
		args         []string
		want         string
	}{
		{"RLE by dcmcrle", "rle", nil, tsRLELossless},
		{"RLE, 2 fragments per frame", "rle", []string{"--fragments", "2"}, tsRLELossless},
		{"deflate by dcmconv", "deflate", nil, tsDeflatedLE},
		{"big endian by dcmconv", "big-endian", nil, tsExplicitBE},
		{"JPEG lossless by dcmcjpeg +el", "jpeg-lossless", nil, tsJPEGLossless},
		{"JPEG lossless SV1 by dcmcjpeg +e1", "jpeg-lossless-sv1", nil, tsJPEGLosslessSV1},
		// Without a Basic Offset Table, frames are found by their SOI marker.
		{"JPEG lossless SV1, 3 fragments per frame, no offset table", "jpeg-lossless-sv1", []string{"--fragments", "3", "--no-bot"}, tsJPEGLosslessSV1},
	}
	for _, s := range series {
		t.Run(s.name, func(t *testing.T) {
			src := fixture.MakeSeries(t, false, s.args...)
			want := parseFolder(t, Parser{}, src.Dir)
			for _, sx := range syntaxes {
				t.Run(sx.name, func(t *testing.T) {
					dir := fixture.Compress(t, src.Dir, sx.syntax, sx.args...)
					got := parseFolder(t, Parser{}, dir)
					if len(got) != len(want) {
						t.Fatalf("%d instances, want %d", len(got), len(want))
					}
					names := make([]string, 0, len(want))
					for n := range want {
						names = append(names, n)
					}
					sort.Strings(names)
					data, _ := os.ReadFile(filepath.Join(dir, names[0]))
					if ts, _ := FileTransferSyntax(data); ts != sx.want {
						t.Fatalf("compress.py wrote %s, want %s", ts, sx.want)
					}
					for _, n := range names {
						w, g := planes([]*Instance{want[n]}), planes([]*Instance{got[n]})
						if len(w) != len(g) {
							t.Fatalf("%s: %d planes, want %d", n, len(g), len(w))
						}
						for k := range w {
							if fmt.Sprint(g[k].Pixels()) != fmt.Sprint(w[k].Pixels()) {
								t.Fatalf("%s plane %d differs from the uncompressed one", n, k)
							}
						}
					}
				})
			}
		})
	}
}

func TestParseInstance_DeflateBounds(t *testing.T) {
	s := axialSynth(0)
	plain := s.encode(t)
	scan, err := checkStructure(plain)
	if err != nil {
		t.Fatal(err)
	}
	deflated := func(body []byte) []byte {
		meta, err := rewriteMeta(plain[:scan.metaEnd], tsDeflatedLE)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		_, _ = w.Write(body)
		_ = w.Close()
		return append(meta, buf.Bytes()...)
	}
	t.Run("a real deflated instance", func(t *testing.T) {
		in, err := ParseInstance(deflated(plain[scan.metaEnd:]))
		if err != nil {
			t.Fatal(err)
		}
		if in.SOPInstanceUID != s.sop || in.Rows != 3 {
			t.Errorf("parsed %s %dx%d", in.SOPInstanceUID, in.Cols, in.Rows)
		}
	})
	t.Run("a deflate bomb is refused while inflating", func(t *testing.T) {
		// 64 MiB of zeros deflate to about 64 KiB.
		bomb := deflated(make([]byte, 64<<20))
		_, err := Parser{MaxBytes: 1 << 20}.ParseInstance(t.Context(), bomb)
		if !errors.Is(err, ErrInvalidSeries) || !strings.Contains(err.Error(), "deflated dataset inflates to more than 1048576 bytes") {
			t.Fatalf("error %v", err)
		}
		t.Logf("%d bytes refused: %v", len(bomb), err)
	})
	t.Run("garbage after the meta information", func(t *testing.T) {
		b := append(bytes.Clone(plain[:scan.metaEnd]), 0xff, 0xfe, 0xfd)
		meta, _ := rewriteMeta(b[:scan.metaEnd], tsDeflatedLE)
		_, err := ParseInstance(append(meta, 0xff, 0xfe, 0xfd))
		if !errors.Is(err, ErrInvalidSeries) || !strings.Contains(err.Error(), "deflated dataset") {
			t.Fatalf("error %v", err)
		}
	})
}

// FuzzFileTransferSyntax: the meta header of downloaded bytes must never
// panic the reader.
func FuzzFileTransferSyntax(f *testing.F) {
	s := axialSynth(0)
	f.Add(s.encode(f))
	s.ts = tsJPEGLosslessSV1
	f.Add(s.encode(f))
	f.Add([]byte("DICM"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, ok := FileTransferSyntax(data)
		if !ok && ts != "" {
			t.Fatalf("not ok but ts %q", ts)
		}
	})
}

// TestParseInstance_JPEGLossyMatchesDCMTK: lossy JPEG decoded here is
// within 1 of DCMTK's dcmdjpeg decode of the same files, through the whole
// parse (classic and enhanced, 8 and 12 bits).
func TestParseInstance_JPEGLossyMatchesDCMTK(t *testing.T) {
	if _, err := exec.LookPath("dcmdjpeg"); err != nil {
		t.Skip("dcmdjpeg not found: install dcmtk (make deps)")
	}
	tests := []struct {
		name, syntax string
		args         []string
		want         string
	}{
		{"baseline, 8-bit", "jpeg-baseline", []string{"--bits", "8"}, tsJPEGBaseline},
		{"extended, 12 of 16 bits", "jpeg-extended", []string{"--slope", "0.0625"}, tsJPEGExtended},
		{"extended, enhanced MR", "jpeg-extended", []string{"--slope", "0.0625", "--enhanced"}, tsJPEGExtended},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fixture.MakeSeries(t, false, append([]string{"--step", "3", "--seed", "41"}, tt.args...)...)
			dir := fixture.Compress(t, src.Dir, tt.syntax)
			ref := t.TempDir()
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if b, err := exec.Command("dcmdjpeg", "-q", filepath.Join(dir, e.Name()), filepath.Join(ref, e.Name())).CombinedOutput(); err != nil {
					t.Fatalf("dcmdjpeg: %v\n%s", err, b)
				}
			}
			got, want := parseFolder(t, Parser{}, dir), parseFolder(t, Parser{}, ref)
			worst, n := 0.0, 0
			for name, w := range want {
				if ts, _ := FileTransferSyntax(mustRead(t, filepath.Join(dir, name))); ts != tt.want {
					t.Fatalf("%s: transfer syntax %s, want %s", name, ts, tt.want)
				}
				wp, gp := planes([]*Instance{w}), planes([]*Instance{got[name]})
				if len(wp) != len(gp) {
					t.Fatalf("%s: %d planes, want %d", name, len(gp), len(wp))
				}
				for k := range wp {
					a, b := gp[k].Pixels(), wp[k].Pixels()
					for i := range a {
						worst = max(worst, math.Abs(float64(a[i]-b[i]))/gp[k].RescaleSlope)
					}
					n++
				}
			}
			t.Logf("%d planes: max difference from dcmdjpeg %g stored units", n, worst)
			if worst > 1 {
				t.Fatalf("differs from dcmdjpeg by up to %g stored units", worst)
			}
		})
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
