package codec

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/volume"
)

// The JPEG-LS frames of these tests are made by DCMTK's dcmcjpls (CharLS is
// not DCMTK's JPEG-LS codec: DCMTK carries its own fork), from series that
// makeseries.py reslices from the ch2 MRI.

const (
	tsJLSLossless = "1.2.840.10008.1.2.4.80"
	tsJLSNear     = "1.2.840.10008.1.2.4.81"
	tsJ2KLossless = "1.2.840.10008.1.2.4.90"
)

// dcmcjpls writes a copy of every file of the series in dir with dcmcjpls
// and its arguments ("+el" lossless, "+en", "+md", "3" near-lossless with
// NEAR 3), and returns the copy's folder.
func dcmcjpls(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "jpegls")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".dcm") {
			continue
		}
		argv := append(append([]string{"-q"}, args...), filepath.Join(dir, e.Name()), filepath.Join(out, e.Name()))
		if b, err := exec.Command("dcmcjpls", argv...).CombinedOutput(); err != nil {
			t.Fatalf("dcmcjpls %v failed (run make deps: dcmtk): %v\n%s", args, err, b)
		}
	}
	return out
}

// parseJLSDir is parseDir for a folder of JPEG-LS files of one syntax,
// decoded by dec; it returns the instances and the syntax.
func parseJLSDir(t testing.TB, dec volume.FrameDecoder, dir string) (map[string]*volume.Instance, string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*volume.Instance{}
	syntax := ""
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		ts, ok := volume.FileTransferSyntax(data)
		if !ok {
			t.Fatalf("%s is not a Part-10 file", e.Name())
		}
		if syntax != "" && ts != syntax {
			t.Fatalf("%s is %s, the folder's other files %s", e.Name(), ts, syntax)
		}
		syntax = ts
		in, err := volume.Parser{Decoder: dec}.ParseInstance(context.Background(), data)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out[e.Name()] = in
	}
	if len(out) == 0 {
		t.Fatalf("no DICOM files in %s", dir)
	}
	return out, syntax
}

// jlsFrames returns the JPEG-LS frames of the files in dir as a Parser hands
// them to its decoder.
func jlsFrames(t testing.TB, dir string) []*volume.Frame {
	t.Helper()
	rec := &recorder{}
	parseJLSDir(t, rec, dir)
	for _, f := range rec.frames {
		if codecFor(f.TransferSyntax) != codecJLS {
			t.Fatalf("frame of %s, want JPEG-LS", f.Describe())
		}
	}
	return rec.frames
}

// jlsFrame returns a real JPEG-LS lossless frame of a small series and the
// buffer it decodes into.
func jlsFrame(t testing.TB) (*volume.Frame, []byte) {
	t.Helper()
	src := fixture.MakeSeries(t, false, "--step", "8", "--seed", "21")
	f := jlsFrames(t, dcmcjpls(t, src.Dir, "+el"))[0]
	return f, make([]byte, f.Size())
}

// jlsNear reads NEAR from the first start of scan of a JPEG-LS codestream
// (ITU-T T.87 C.2.3), so that a test knows what its encoder did.
func jlsNear(data []byte) (int, error) {
	if !bytes.HasPrefix(data, []byte{0xff, 0xd8}) {
		return 0, errors.New("no SOI marker")
	}
	for pos := 2; pos+4 <= len(data); {
		if data[pos] != 0xff {
			return 0, fmt.Errorf("no marker at byte %d", pos)
		}
		marker, n := data[pos+1], int(data[pos+2])<<8|int(data[pos+3])
		if pos+2+n > len(data) || n < 2 {
			return 0, fmt.Errorf("marker segment at byte %d runs past the end", pos)
		}
		if marker == 0xda { // SOS: Ls, Ns, Ns x (Ci, Tmi), NEAR, ILV, Al/Ah
			ns := int(data[pos+4])
			if 3+2*ns >= n {
				return 0, errors.New("short SOS segment")
			}
			return int(data[pos+5+2*ns]), nil
		}
		pos += 2 + n
	}
	return 0, errors.New("no SOS marker")
}

func TestPool_DecodesJPEGLSLikeTheUncompressedSeries(t *testing.T) {
	pool := newTestPool(t, Config{})
	type row struct {
		name string
		args []string // dcmcjpls's
		near int      // the NEAR the codestreams must carry; 0 is lossless
	}
	lossless := row{"lossless", []string{"+el"}, 0}
	near2 := row{"near-lossless, NEAR 2", []string{"+en"}, 2}
	near3 := row{"near-lossless, NEAR 3", []string{"+en", "+md", "3"}, 3}
	series := []struct {
		name string
		args []string
		rows []row
	}{
		{"classic 16-bit, 12 stored", []string{"--step", "4", "--seed", "11"}, []row{lossless, near2, near3}},
		{"enhanced MR multi-frame", []string{"--step", "4", "--seed", "12", "--enhanced"}, []row{lossless, near3}},
		// dcmcjpls refuses near-lossless for signed pixels.
		{"signed, 12 of 16 bits", []string{"--step", "4", "--seed", "13", "--signed", "--intercept", "100", "--bits-stored", "12"}, []row{lossless}},
		{"signed, 16 of 16 bits", []string{"--step", "4", "--seed", "15", "--signed", "--intercept", "100", "--bits-stored", "16"}, []row{lossless}},
		{"8-bit", []string{"--step", "4", "--seed", "14", "--bits", "8"}, []row{lossless, near2}},
	}
	for _, s := range series {
		t.Run(s.name, func(t *testing.T) {
			src := fixture.MakeSeries(t, false, s.args...)
			want := planePixels(parseDir(t, volume.Parser{}, src.Dir))
			for _, r := range s.rows {
				t.Run(r.name, func(t *testing.T) {
					dir := dcmcjpls(t, src.Dir, r.args...)
					frames := jlsFrames(t, dir)
					wantTS := tsJLSLossless
					if r.near > 0 {
						wantTS = tsJLSNear
					}
					for _, f := range frames {
						near, err := jlsNear(f.Data)
						if err != nil || near != r.near || f.TransferSyntax != wantTS {
							t.Fatalf("%s: NEAR %d (%v), want %d under %s", f.Describe(), near, err, r.near, wantTS)
						}
					}
					start := time.Now()
					m, _ := parseJLSDir(t, pool, dir)
					took := time.Since(start)
					got := planePixels(m)
					maxAbs, rms, span := difference(t, got, want)
					switch {
					case r.near == 0 && maxAbs != 0:
						t.Errorf("lossless decoding differs from the uncompressed pixels by up to %g", maxAbs)
					case r.near > 0 && maxAbs > float64(r.near):
						// RescaleSlope is 1 in these series: a stored
						// value off by NEAR is a modality value off by NEAR.
						t.Errorf("near-lossless decoding differs by up to %g, over NEAR %d", maxAbs, r.near)
					case r.near > 0 && maxAbs == 0:
						t.Errorf("near-lossless decoding equals the source exactly: the series was not compressed lossily")
					}
					t.Logf("%d planes (%d frames) in %v; largest difference %g, RMS %.3g (value range %g)", len(got), len(frames), took, maxAbs, rms, span)
				})
			}
		})
	}
}

func TestPool_RejectsJPEGLS(t *testing.T) {
	f, want := jlsFrame(t)
	p := newTestPool(t, Config{Size: 1})
	mustDecode(t, p, f, want)
	j2k, _ := j2kFrame(t)
	bad := func(mod func(g *volume.Frame)) *volume.Frame {
		g := *f
		g.Data = append([]byte(nil), f.Data...)
		mod(&g)
		return &g
	}
	tests := []struct {
		name    string
		frame   *volume.Frame
		wantErr string
		// mayDecode: JPEG-LS has no error resilience, but a flipped bit
		// can still leave a stream that decodes; it must not crash.
		mayDecode bool
	}{
		{name: "garbage", frame: bad(func(g *volume.Frame) { g.Data = []byte("this is not a JPEG-LS codestream at all") }),
			wantErr: "JPEG-LS decoder: not a valid JPEG-LS codestream"},
		{name: "a start marker and nothing else", frame: bad(func(g *volume.Frame) { g.Data = []byte{0xff, 0xd8} }),
			wantErr: "JPEG-LS decoder: not a valid JPEG-LS codestream"},
		{name: "a JPEG 2000 codestream", frame: bad(func(g *volume.Frame) { g.Data = j2k.Data }),
			wantErr: "JPEG-LS decoder: not a valid JPEG-LS codestream"},
		{name: "truncated to half", frame: bad(func(g *volume.Frame) { g.Data = g.Data[:len(g.Data)/2] }),
			wantErr: "JPEG-LS decoder: cannot decode the codestream"},
		{name: "truncated in its header", frame: bad(func(g *volume.Frame) { g.Data = g.Data[:20] }),
			wantErr: "JPEG-LS decoder: not a valid JPEG-LS codestream"},
		{name: "corrupt scan", frame: bad(func(g *volume.Frame) {
			for i := len(g.Data) / 3; i < len(g.Data)-2; i += 7 {
				g.Data[i] ^= 0x5a
			}
		}), wantErr: "JPEG-LS decoder", mayDecode: true},
		{name: "fewer rows than the codestream", frame: bad(func(g *volume.Frame) { g.Rows-- }),
			wantErr: fmt.Sprintf("the codestream holds a %dx%d image with 1 components, the DICOM header says %dx%d with 1", f.Cols, f.Rows, f.Cols, f.Rows-1)},
		{name: "more columns than the codestream", frame: bad(func(g *volume.Frame) { g.Cols++ }),
			wantErr: fmt.Sprintf("the codestream holds a %dx%d image with 1 components, the DICOM header says %dx%d with 1", f.Cols, f.Rows, f.Cols+1, f.Rows)},
		{name: "colour", frame: bad(func(g *volume.Frame) { g.SamplesPerPixel = 3 }), wantErr: "JPEG-LS frames of 3 samples per pixel are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.DecodeFrame(context.Background(), tt.frame, make([]byte, tt.frame.Size()))
			if tt.mayDecode && err == nil {
				t.Log("decoded despite the corruption")
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, volume.ErrInvalidSeries) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want a *DecodeError wrapping ErrInvalidSeries saying %q", err, tt.wantErr)
			}
			t.Logf("%v", err)
		})
	}
	t.Run("over the memory limit with CharLS's sample buffer", func(t *testing.T) {
		// 32 MiB decoded and some compressed bytes fit in 48 MiB; the
		// 32 MiB CharLS decodes into before packing do not.
		small := newTestPool(t, Config{Size: 1, MemoryLimit: 48 << 20})
		g := bad(func(g *volume.Frame) { g.Rows, g.Cols = 4096, 4096 })
		err := small.DecodeFrame(context.Background(), g, make([]byte, g.Size()))
		if !errors.Is(err, volume.ErrInvalidSeries) || !strings.Contains(err.Error(), "over the JPEG-LS decoder's memory limit of 50331648 bytes") {
			t.Fatalf("error %v, want the memory limit", err)
		}
		if n := len(livePIDs(small)); n != 0 {
			t.Errorf("%d children started for a frame refused before decoding", n)
		}
	})
	// After all of that the pool still decodes, and the same.
	dst := make([]byte, f.Size())
	mustDecode(t, p, f, dst)
	if !bytes.Equal(dst, want) {
		t.Error("the frame decodes differently after the failures")
	}
}

func TestPool_ColourJPEGLS(t *testing.T) {
	// A real 3-component JPEG-LS codestream under a header that claims one
	// sample per pixel: the codestream's component count is checked.
	src := fixture.MakeSeries(t, false, "--step", "8", "--seed", "22", "--bits", "8")
	entries, err := os.ReadDir(src.Dir)
	if err != nil || len(entries) == 0 {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rgb := filepath.Join(dir, "rgb.dcm")
	script := `import sys, numpy as np, pydicom
ds = pydicom.dcmread(sys.argv[1])
a = ds.pixel_array
ds.PixelData = np.stack([a, a // 2, 255 - a], axis=-1).astype(np.uint8).tobytes()
ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
ds.save_as(sys.argv[2])`
	if b, err := exec.Command(fixture.Python, "-c", script, filepath.Join(src.Dir, entries[0].Name()), rgb).CombinedOutput(); err != nil {
		t.Fatalf("make an RGB file: %v\n%s", err, b)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("dcmcjpls", "-q", "+el", rgb, filepath.Join(out, "rgb.dcm")).CombinedOutput(); err != nil {
		t.Fatalf("dcmcjpls: %v\n%s", err, b)
	}
	data := mustRead(t, filepath.Join(out, "rgb.dcm"))
	ts, _ := volume.FileTransferSyntax(data)
	// The parser refuses colour before a decoder would see it, so the frame
	// is cut by hand: the codestream in the one fragment after the pixel
	// data element (7FE0,0010) OB.
	pix := bytes.Index(data, []byte{0xe0, 0x7f, 0x10, 0x00, 'O', 'B'})
	soi := bytes.Index(data[max(pix, 0):], []byte{0xff, 0xd8, 0xff}) + max(pix, 0)
	eoi := bytes.LastIndex(data, []byte{0xff, 0xd9})
	if pix < 0 || soi < pix || eoi < soi {
		t.Fatal("no JPEG-LS codestream in the file")
	}
	in, err := volume.ParseInstance(mustRead(t, filepath.Join(src.Dir, entries[0].Name())))
	if err != nil {
		t.Fatal(err)
	}
	f := &volume.Frame{SOPInstanceUID: "rgb", TransferSyntax: ts, Data: data[soi : eoi+2],
		Rows: in.Rows, Cols: in.Cols, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8, HighBit: 7}
	p := newTestPool(t, Config{Size: 1})
	err = p.DecodeFrame(context.Background(), f, make([]byte, f.Size()))
	wantErr := fmt.Sprintf("the codestream holds a %dx%d image with 3 components, the DICOM header says %dx%d with 1", in.Cols, in.Rows, in.Cols, in.Rows)
	if !errors.Is(err, volume.ErrInvalidSeries) || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("error %v, want %q", err, wantErr)
	}
	t.Log(err)
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPool_LibrariesLoadApart(t *testing.T) {
	jls, jlsDst := jlsFrame(t)
	j2k, j2kDst := j2kFrame(t)
	t.Run("no CharLS: JPEG-LS fails saying what to install, JPEG 2000 decodes", func(t *testing.T) {
		p := newTestPool(t, Config{Size: 1, CharLSLibrary: "libcharls-not-installed.so.2"})
		mustDecode(t, p, j2k, j2kDst)
		err := p.DecodeFrame(context.Background(), jls, jlsDst)
		if !errors.Is(err, ErrNoCharLS) || errors.Is(err, ErrNoOpenJPEG) || !errors.Is(err, volume.ErrInvalidSeries) ||
			!strings.Contains(err.Error(), "install libcharls2") {
			t.Fatalf("error %v, want ErrNoCharLS saying install libcharls2", err)
		}
		t.Log(err)
		mustDecode(t, p, j2k, j2kDst)
	})
	t.Run("no OpenJPEG: JPEG 2000 fails saying what to install, JPEG-LS decodes", func(t *testing.T) {
		p := newTestPool(t, Config{Size: 1, OpenJPEGLibrary: "libopenjp2-not-installed.so.7"})
		mustDecode(t, p, jls, jlsDst)
		err := p.DecodeFrame(context.Background(), j2k, j2kDst)
		if !errors.Is(err, ErrNoOpenJPEG) || errors.Is(err, ErrNoCharLS) || !strings.Contains(err.Error(), "install libopenjp2-7") {
			t.Fatalf("error %v, want ErrNoOpenJPEG saying install libopenjp2-7", err)
		}
		mustDecode(t, p, jls, jlsDst)
	})
	t.Run("a library without the CharLS 2 API", func(t *testing.T) {
		// OpenJPEG loads, but has none of CharLS's functions.
		p := newTestPool(t, Config{Size: 1, CharLSLibrary: DefaultOpenJPEGLibrary})
		err := p.DecodeFrame(context.Background(), jls, jlsDst)
		if !errors.Is(err, ErrNoCharLS) || !strings.Contains(err.Error(), "has no function charls_") {
			t.Fatalf("error %v, want ErrNoCharLS naming the missing function", err)
		}
		t.Log(err)
	})
	t.Run("one child serves both", func(t *testing.T) {
		p := newTestPool(t, Config{Size: 1})
		for range 3 {
			mustDecode(t, p, jls, jlsDst)
			mustDecode(t, p, j2k, j2kDst)
		}
		if n := len(livePIDs(p)); n != 1 {
			t.Errorf("%d children, want 1", n)
		}
	})
}

func TestPool_JPEGLSFaults(t *testing.T) {
	t.Run("crash", func(t *testing.T) {
		faultCase(t, jlsFrame, Config{}, opFaultCrash, "JPEG-LS decoder crashed: exit status 2: SIGSEGV")
	})
	t.Run("hang", func(t *testing.T) {
		faultCase(t, jlsFrame, Config{FrameTimeout: 300 * time.Millisecond, CPULimit: 10 * time.Second}, opFaultHang,
			"JPEG-LS decoder did not finish within 300ms")
	})
	t.Run("spin", func(t *testing.T) {
		faultCase(t, jlsFrame, Config{FrameTimeout: 30 * time.Second, CPULimit: time.Second}, opFaultSpin,
			"it used more than its CPU time limit")
	})
}

// slowJLS is a 334-byte JPEG-LS codestream for a 23x28 frame, found by
// FuzzPool_JPEGLS, on which CharLS 2.4.1 computes for seconds before it
// fails (its preset parameters, LSE, set MAXVAL 65535 for 16-bit samples):
// what the CPU limit of a child is for.
const slowJLS = "ffd8fff7000b10001c001701011100fff8000d01ffff0012004301140040ffda0008010100000000ff7b8fb06e0640c87505c8b0ec3596e326e3549988d08a0440480f126074579fb3ed952bb92b02232c0a8c10120a41481e5a42590d0e27ff6d84168c915a134238923f43f87d18e03c2689b0866c4add15d530c25f87f0f60242f8a28a80b17a1c4b23f0b23f40d819525c558b901644c068491aa0e45481f0ca40c6084d16850707c52d883349077488632a4e0012c2296e8a61a142184493f05e053aa5fcc29a1c590c608c0693a2480a01c2c802004150ec7d20c661445d92b1b7450021e4830360b4c50d82e1341e82d0160841683907c1b8493a89dc88d71ba008211ba0c4810d4118a7046450c4823589e469123694c4382d052539520040889abf1be0643f1d4621b8ee0388a5884c8d2a9c7443e11c2c80500478921828ca20413092fc0b80482250"

func TestPool_JPEGLSThatComputesForSeconds(t *testing.T) {
	f, want := jlsFrame(t)
	data, err := hex.DecodeString(slowJLS)
	if err != nil {
		t.Fatal(err)
	}
	// CPU time, not the wall clock, so that a busy machine does not decide.
	p := newTestPool(t, Config{Size: 1, FrameTimeout: time.Minute, CPULimit: time.Second})
	mustDecode(t, p, f, want)
	g := *f
	g.Data = data
	start := time.Now()
	err = p.DecodeFrame(context.Background(), &g, make([]byte, g.Size()))
	if !errors.Is(err, volume.ErrInvalidSeries) || !strings.Contains(err.Error(), "JPEG-LS decoder crashed: it used more than its CPU time limit") {
		t.Fatalf("error %v, want the CPU time limit", err)
	}
	t.Logf("after %v: %v", time.Since(start), err)
	dst := make([]byte, f.Size())
	mustDecode(t, p, f, dst)
	if !bytes.Equal(dst, want) {
		t.Error("the frame decodes differently after the failure")
	}
}
