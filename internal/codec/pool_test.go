package codec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
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

// j2kFrame returns a real JPEG 2000 frame (from the first file of a small
// gdcmconv series) and the buffer it decodes into.
func j2kFrame(t testing.TB) (*volume.Frame, []byte) {
	t.Helper()
	src := fixture.MakeSeries(t, false, "--step", "8", "--seed", "21")
	dir := fixture.Compress(t, src.Dir, "j2k")
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("read %s: %v", dir, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	in, err := volume.Parser{Decoder: rec}.ParseInstance(context.Background(), data)
	if err != nil || len(rec.frames) != 1 {
		t.Fatalf("parse %s: %v (%d frames seen)", entries[0].Name(), err, len(rec.frames))
	}
	f := rec.frames[0]
	if f.Rows != in.Rows || f.Cols != in.Cols {
		t.Fatalf("frame %dx%d, instance %dx%d", f.Cols, f.Rows, in.Cols, in.Rows)
	}
	return f, make([]byte, f.Size())
}

// recorder is a volume.FrameDecoder that keeps the frames it is given and
// decodes them to zeros.
type recorder struct {
	mu     sync.Mutex
	frames []*volume.Frame
}

func (r *recorder) DecodeFrame(_ context.Context, f *volume.Frame, _ []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := *f
	cp.Data = append([]byte(nil), f.Data...)
	r.frames = append(r.frames, &cp)
	return nil
}

// livePIDs returns the process ids of the pool's children.
func livePIDs(p *Pool) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for c := range p.live {
		out = append(out, c.pid())
	}
	sort.Ints(out)
	return out
}

// processGone reports whether pid no longer exists (its zombie reaped).
func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// mustDecode decodes f and fails the test unless it works.
func mustDecode(t *testing.T, p *Pool, f *volume.Frame, dst []byte) {
	t.Helper()
	if err := p.DecodeFrame(context.Background(), f, dst); err != nil {
		t.Fatalf("decoding a good frame: %v", err)
	}
}

// faultCase runs a fault request on a fresh child (after one good frame, so
// the child is warm) and checks how it fails, that the child is replaced,
// and that the pool decodes the next frame.
func faultCase(t *testing.T, frame func(testing.TB) (*volume.Frame, []byte), cfg Config, op byte, wantErr string) time.Duration {
	t.Helper()
	cfg.faults, cfg.Size = true, 1
	p := newTestPool(t, cfg)
	f, dst := frame(t)
	mustDecode(t, p, f, dst)
	before := livePIDs(p)
	if len(before) != 1 {
		t.Fatalf("%d children after one frame, want 1", len(before))
	}
	start := time.Now()
	err := p.do(context.Background(), codecFor(f.TransferSyntax), &request{op: op}, nil, f)
	took := time.Since(start)
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, volume.ErrInvalidSeries) {
		t.Fatalf("error %v (%T), want a *DecodeError wrapping ErrInvalidSeries", err, err)
	}
	if !strings.Contains(err.Error(), wantErr) {
		t.Errorf("error %q does not say %q", err, wantErr)
	}
	t.Logf("after %v: %v", took, err)
	if !processGone(before[0]) {
		t.Errorf("child %d is still there after failing", before[0])
	}
	mustDecode(t, p, f, dst)
	after := livePIDs(p)
	if len(after) != 1 || after[0] == before[0] {
		t.Errorf("children %v after the failure, want one new one (the old was %d)", after, before[0])
	}
	return took
}

func TestPool_Faults(t *testing.T) {
	t.Run("a decoder that crashes fails its frame, is replaced, the parent lives", func(t *testing.T) {
		faultCase(t, j2kFrame, Config{}, opFaultCrash, "JPEG 2000 decoder crashed: exit status 2: SIGSEGV")
	})
	t.Run("a decoder that hangs hits the frame timeout", func(t *testing.T) {
		took := faultCase(t, j2kFrame, Config{FrameTimeout: 300 * time.Millisecond, CPULimit: 10 * time.Second}, opFaultHang,
			"JPEG 2000 decoder did not finish within 300ms")
		if took > 5*time.Second {
			t.Errorf("the timeout took %v", took)
		}
	})
	t.Run("a decoder that spins hits its CPU time limit", func(t *testing.T) {
		took := faultCase(t, j2kFrame, Config{FrameTimeout: 30 * time.Second, CPULimit: time.Second}, opFaultSpin,
			"it used more than its CPU time limit")
		if took > 10*time.Second {
			t.Errorf("the CPU limit took %v", took)
		}
	})
	t.Run("a decoder that allocates without bound gets a failed allocation", func(t *testing.T) {
		p := newTestPool(t, Config{Size: 1, faults: true, MemoryLimit: 256 << 20})
		f, dst := j2kFrame(t)
		mustDecode(t, p, f, dst)
		err := p.do(context.Background(), codecFor(f.TransferSyntax), &request{op: opFaultAlloc}, nil, f)
		var mib int
		if _, serr := fmt.Sscanf(fmt.Sprint(err), "JPEG 2000 decoder: out of memory after allocating %d MiB", &mib); serr != nil {
			t.Fatalf("error %v, want out of memory", err)
		}
		// The limit is on top of the child's size at start, some of which
		// is free heap the allocator may reuse.
		if mib < 128 || mib > 256+64 {
			t.Errorf("the child allocated %d MiB under a limit of 256 MiB", mib)
		}
		t.Log(err)
		mustDecode(t, p, f, dst)
	})
}

func TestPool_ChildKilledMidRequest(t *testing.T) {
	p := newTestPool(t, Config{Size: 1, faults: true, FrameTimeout: time.Minute})
	f, dst := j2kFrame(t)
	mustDecode(t, p, f, dst)
	pids := livePIDs(p)
	if len(pids) != 1 {
		t.Fatalf("children %v, want 1", pids)
	}
	done := make(chan error, 1)
	go func() {
		done <- p.do(context.Background(), codecFor(f.TransferSyntax), &request{op: opFaultHang}, nil, f)
	}()
	// The child is busy once the pool's one slot is taken; kill it then,
	// as the OOM killer or an operator would.
	deadline := time.Now().Add(10 * time.Second)
	for len(p.slots) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never took the pool's slot")
		}
		time.Sleep(time.Millisecond)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the request did not end after its child was killed")
	}
	if !errors.Is(err, volume.ErrInvalidSeries) || !strings.Contains(err.Error(), "JPEG 2000 decoder crashed: killed by signal killed") {
		t.Fatalf("error %v, want the crash reported", err)
	}
	mustDecode(t, p, f, dst)
	if now := livePIDs(p); len(now) != 1 || now[0] == pids[0] {
		t.Errorf("children %v, want one replacing %d", now, pids[0])
	}
}

func TestPool_Rejects(t *testing.T) {
	f, dst := j2kFrame(t)
	p := newTestPool(t, Config{Size: 1})
	mustDecode(t, p, f, dst)
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
	}{
		{"garbage", bad(func(g *volume.Frame) { g.Data = []byte("this is not a JPEG 2000 codestream at all") }),
			"JPEG 2000 decoder: not a valid JPEG 2000 codestream"},
		{"a start marker and nothing else", bad(func(g *volume.Frame) { g.Data = append([]byte{0xff, 0x4f, 0xff, 0x51}, make([]byte, 64)...) }),
			"JPEG 2000 decoder: not a valid JPEG 2000 codestream"},
		{"truncated to half", bad(func(g *volume.Frame) { g.Data = g.Data[:len(g.Data)/2] }),
			"JPEG 2000 decoder: cannot decode the codestream"},
		{"corrupt code blocks", bad(func(g *volume.Frame) {
			for i := len(g.Data) / 3; i < len(g.Data)-2; i += 7 {
				g.Data[i] ^= 0x5a
			}
		}), "JPEG 2000 decoder"},
		{"larger than its header says", bad(func(g *volume.Frame) { g.Rows-- }),
			fmt.Sprintf("the codestream holds a %dx%d image with 1 components, the DICOM header says %dx%d with 1", f.Cols, f.Rows, f.Cols, f.Rows-1)},
		{"colour", bad(func(g *volume.Frame) { g.SamplesPerPixel = 3 }), "JPEG 2000 frames of 3 samples per pixel are not supported"},
		{"over the memory limit", bad(func(g *volume.Frame) { g.Rows, g.Cols = 65535, 65535 }), "over the JPEG 2000 decoder's memory limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.DecodeFrame(context.Background(), tt.frame, make([]byte, tt.frame.Size()))
			if tt.name == "corrupt code blocks" && err == nil {
				// JPEG 2000 is built to survive bit errors in code
				// blocks: decoding may succeed. It must not crash.
				t.Log("decoded despite the corruption")
				return
			}
			if err == nil || !errors.Is(err, volume.ErrInvalidSeries) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one wrapping ErrInvalidSeries saying %q", err, tt.wantErr)
			}
			t.Logf("%v", err)
		})
	}
	// After all of that the pool still decodes.
	mustDecode(t, p, f, dst)
}

func TestPool_StartFailures(t *testing.T) {
	f, dst := j2kFrame(t)
	t.Run("no OpenJPEG: the frame fails saying what to install", func(t *testing.T) {
		p := newTestPool(t, Config{OpenJPEGLibrary: "libopenjp2-not-installed.so.7"})
		err := p.DecodeFrame(context.Background(), f, dst)
		if !errors.Is(err, ErrNoOpenJPEG) || !errors.Is(err, volume.ErrInvalidSeries) || !strings.Contains(err.Error(), "install libopenjp2-7") {
			t.Fatalf("error %v, want ErrNoOpenJPEG saying install libopenjp2-7", err)
		}
		t.Log(err)
	})
	t.Run("a binary without the RunIfChild hook", func(t *testing.T) {
		p := newTestPool(t, Config{Executable: "/bin/true"})
		err := p.DecodeFrame(context.Background(), f, dst)
		if err == nil || errors.Is(err, volume.ErrInvalidSeries) || !strings.Contains(err.Error(), "must call codec.RunIfChild") {
			t.Fatalf("error %v, want a start failure that is not the series' fault", err)
		}
		t.Log(err)
	})
	t.Run("a closed pool", func(t *testing.T) {
		p := newTestPool(t, Config{})
		mustDecode(t, p, f, dst)
		pids := livePIDs(p)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.DecodeFrame(context.Background(), f, dst); !errors.Is(err, ErrClosed) {
			t.Fatalf("error %v, want ErrClosed", err)
		}
		for _, pid := range pids {
			if !processGone(pid) {
				t.Errorf("child %d outlived Close", pid)
			}
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("a cancelled context", func(t *testing.T) {
		p := newTestPool(t, Config{Size: 1, faults: true})
		mustDecode(t, p, f, dst)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.do(ctx, codecFor(f.TransferSyntax), &request{op: opFaultHang}, nil, f) }()
		for len(p.slots) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
		mustDecode(t, p, f, dst)
	})
}

func TestPool_ReusesAFewChildren(t *testing.T) {
	f, want := j2kFrame(t)
	p := newTestPool(t, Config{Size: 2})
	mustDecode(t, p, f, want)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, f.Size())
			if err := p.DecodeFrame(context.Background(), f, dst); err != nil {
				errs <- err
				return
			}
			if string(dst) != string(want) {
				errs <- errors.New("a frame decoded differently")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(livePIDs(p)); n < 1 || n > 2 {
		t.Errorf("%d children for 41 frames with Size 2, want 1 or 2", n)
	}
}

func TestPool_CloseDuringAFrame(t *testing.T) {
	f, dst := j2kFrame(t)
	p := newTestPool(t, Config{Size: 1, faults: true, FrameTimeout: time.Minute})
	mustDecode(t, p, f, dst)
	done := make(chan error, 1)
	go func() {
		done <- p.do(context.Background(), codecFor(f.TransferSyntax), &request{op: opFaultHang}, nil, f)
	}()
	for len(p.slots) == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Shutting down is not the frame's fault: the job must not fail for good.
	if err := <-done; !errors.Is(err, ErrClosed) || errors.Is(err, volume.ErrInvalidSeries) {
		t.Fatalf("error %v, want ErrClosed", err)
	}
}
