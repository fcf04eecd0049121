package volume

import (
	"errors"
	"math"
	"runtime"
	"strconv"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/checked"
)

// fuzzSeries is the header values FuzzAssemble builds a series from.
type fuzzSeries struct {
	count      uint8  // instances: 2 + count%7
	rows, cols uint32 // Rows and Columns as written
	vrs        uint8  // bits 0-1: Rows' VR, bits 2-3: Columns' (US, UL, IS, SL)
	bits       uint8  // BitsAllocated
	stored     uint8  // BitsStored, 0: BitsAllocated
	signed     bool   // PixelRepresentation 1
	frames     string // NumberOfFrames (IS), "" leaves it out
	enhanced   bool   // Enhanced MR with one per-frame item per frame
	gap        float64
	tilt, skew float64 // rotation about x of every instance, and more of the last
	jitter     float64 // offset along the normal of the middle instance
	rowSp      float64 // PixelSpacing
	colSp      float64
	slope      string // RescaleSlope (DS), "" leaves it out
	intercept  string
	exact      bool   // pixel data of exactly the size the header asks, from pix
	pix        []byte // pixel bytes
}

// fuzzVRs are the VRs Rows and Columns are written with: the dictionary's
// US, and what writers that ignore it use.
var fuzzVRs = [4]string{"US", "UL", "IS", "SL"}

// instances encodes the series as Part-10 files; an instance the writer
// refuses is left out.
func (fs fuzzSeries) instances() [][]byte {
	n := 2 + int(fs.count%7)
	frames := 1
	if f, err := strconv.Atoi(fs.frames); err == nil && f >= 1 && f <= 16 {
		frames = f
	}
	perInstance := 1
	if fs.enhanced {
		perInstance = frames
	}
	planeBytes, ok := checked.Mul(int(fs.rows), int(fs.cols), int(fs.bits)/8, perInstance)
	var out [][]byte
	for k := range n {
		s := axialSynth(k)
		s.rows, s.cols, s.bits, s.bitsStored, s.frames = int(fs.rows), int(fs.cols), int(fs.bits), int(fs.stored), fs.frames
		if fs.signed {
			s.pixRep = 1
		}
		s.set = map[tag.Tag]any{}
		s.vr = map[tag.Tag]string{}
		for _, d := range []struct {
			t  tag.Tag
			v  int
			vr string
		}{{tag.Rows, s.rows, fuzzVRs[fs.vrs&3]}, {tag.Columns, s.cols, fuzzVRs[fs.vrs>>2&3]}} {
			s.vr[d.t] = d.vr
			if d.vr == "IS" {
				s.set[d.t] = []string{strconv.Itoa(d.v)}
			}
		}
		a := fs.tilt
		if k == n-1 {
			a += fs.skew
		}
		s.iop = [6]float64{1, 0, 0, 0, math.Cos(a), math.Sin(a)}
		normal := [3]float64{0, -math.Sin(a), math.Cos(a)}
		pos := func(p int) [3]float64 {
			d := float64(p) * fs.gap
			if k == n/2 {
				d += fs.jitter
			}
			return [3]float64{-10 + d*normal[0], -20 + d*normal[1], 30 + d*normal[2]}
		}
		s.pos = pos(k * perInstance)
		s.spacing = [2]float64{fs.rowSp, fs.colSp}
		s.slope, s.intercept = fs.slope, fs.intercept
		if fs.enhanced {
			s.sopClass = "1.2.840.10008.5.1.4.1.1.4.1"
			items := make([][]*dicom.Element, frames)
			for f := range frames {
				p := pos(k*perInstance + f)
				ipp, err := dicom.NewElement(tag.ImagePositionPatient, dsStrings(p[:]...))
				if err != nil {
					continue
				}
				plane, err := dicom.NewElement(tag.PlanePositionSequence, [][]*dicom.Element{{ipp}})
				if err != nil {
					continue
				}
				items[f] = []*dicom.Element{plane}
			}
			s.set[tag.PerFrameFunctionalGroupsSequence] = items
		}
		switch {
		case fs.exact && ok && planeBytes <= 1<<16:
			s.raw = make([]byte, planeBytes)
			for i := range s.raw {
				if len(fs.pix) > 0 {
					s.raw[i] = fs.pix[(i+k)%len(fs.pix)] + byte(k)
				}
			}
		default:
			s.raw = append([]byte{}, fs.pix...) // never nil: nil asks write for zeros of the header's size
		}
		b, err := s.write()
		if err != nil {
			continue
		}
		out = append(out, b)
	}
	return out
}

// fuzzSeeds are FuzzAssemble's seed series: three that assemble into 4x3
// volumes, the reported one, and the largest size Rows and Columns may have.
func fuzzSeeds() map[string]fuzzSeries {
	good := fuzzSeries{count: 2, rows: 3, cols: 4, bits: 16, gap: 2, rowSp: 0.5, colSp: 0.75, exact: true, pix: []byte{1, 2, 3, 250}}
	s8 := good
	s8.count, s8.bits, s8.stored, s8.signed, s8.slope, s8.intercept, s8.tilt = 6, 8, 7, true, "2.5", "-1024", 0.3
	enh := good
	enh.enhanced, enh.frames, enh.bits, enh.vrs = true, "3", 32, 2|2<<2
	big := good
	big.rows, big.cols, big.vrs, big.bits = 65535, 65535, 1|1<<2, 8
	return map[string]fuzzSeries{
		"16-bit": good, "8-bit signed, tilted, rescaled": s8, "enhanced, IS sizes": enh, "65535 square": big,
		// Four instances, Rows and Columns UL 2^31, BitsAllocated 32, empty PixelData.
		"reported": {count: 2, rows: 1 << 31, cols: 1 << 31, vrs: 1 | 1<<2, bits: 32, gap: 2, rowSp: 0.5, colSp: 0.75, pix: []byte{}},
	}
}

// FuzzAssemble builds series of 2-8 instances from fuzzed header values
// (sizes written with any VR, bits, frames, geometry, rescale) and pixel
// bytes and runs them through ParseInstance and Assemble: nothing may panic,
// every error wraps ErrInvalidSeries, and Assemble never makes or allocates
// more than its limits allow.
func FuzzAssemble(f *testing.F) {
	for _, fs := range fuzzSeeds() {
		f.Add(fs.count, fs.rows, fs.cols, fs.vrs, fs.bits, fs.stored, fs.signed, fs.frames, fs.enhanced,
			fs.gap, fs.tilt, fs.skew, fs.jitter, fs.rowSp, fs.colSp, fs.slope, fs.intercept, fs.exact, fs.pix)
	}
	f.Fuzz(func(t *testing.T, count uint8, rows, cols uint32, vrs, bits, stored uint8, signed bool, frames string, enhanced bool,
		gap, tilt, skew, jitter, rowSp, colSp float64, slope, intercept string, exact bool, pix []byte) {
		fs := fuzzSeries{count, rows, cols, vrs, bits, stored, signed, frames, enhanced, gap, tilt, skew, jitter, rowSp, colSp, slope, intercept, exact, pix}
		var insts []*Instance
		planes := 0
		for _, b := range fs.instances() {
			in, err := ParseInstance(b)
			if err != nil {
				if !errors.Is(err, ErrInvalidSeries) {
					t.Fatalf("ParseInstance error %q does not wrap ErrInvalidSeries", err)
				}
				continue
			}
			insts = append(insts, in)
			planes += max(1, len(in.Frames))
		}
		if len(insts) == 0 {
			return
		}
		lim := Limits{MaxVoxels: 1 << 18, MaxBytes: 1 << 20}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		v, err := Assemble(insts, lim)
		runtime.ReadMemStats(&after)
		// The volume, and a 256 KiB lookup table per decoding goroutine for
		// each run of slices with one rescale, and the bookkeeping.
		if got, most := after.TotalAlloc-before.TotalAlloc, uint64(lim.MaxBytes)+uint64(len(insts))*uint64(runtime.GOMAXPROCS(0))<<18+1<<20; got > most {
			t.Fatalf("Assemble allocated %d bytes, more than the %d its limits allow", got, most)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidSeries) {
				t.Fatalf("Assemble error %q does not wrap ErrInvalidSeries", err)
			}
			return
		}
		n, ok := checked.Mul(v.Cols, v.Rows, v.Depth)
		if !ok || n != len(v.Data) || int64(n) > lim.MaxVoxels || 4*int64(n) > lim.MaxBytes {
			t.Fatalf("volume %dx%dx%d with %d values, limits %+v", v.Cols, v.Rows, v.Depth, len(v.Data), lim)
		}
		if v.Depth != planes || len(v.Slices) != v.Depth {
			t.Fatalf("volume of depth %d with %d slices from %d planes", v.Depth, len(v.Slices), planes)
		}
	})
}

// TestFuzzSeries_Seeds checks that FuzzAssemble's builder makes what its
// seeds mean, so that the fuzzer starts from series that assemble and from
// the reported one.
func TestFuzzSeries_Seeds(t *testing.T) {
	seeds := fuzzSeeds()
	for name, depth := range map[string]int{"16-bit": 4, "8-bit signed, tilted, rescaled": 8, "enhanced, IS sizes": 12} {
		t.Run(name, func(t *testing.T) {
			var insts []*Instance
			for _, b := range seeds[name].instances() {
				in, err := ParseInstance(b)
				if err != nil {
					t.Fatal(err)
				}
				insts = append(insts, in)
			}
			v, err := Assemble(insts, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if v.Cols != 4 || v.Rows != 3 || v.Depth != depth {
				t.Errorf("volume %dx%dx%d, want 4x3x%d", v.Cols, v.Rows, v.Depth, depth)
			}
		})
	}
	t.Run("reported", func(t *testing.T) {
		files := seeds["reported"].instances()
		if len(files) != 4 {
			t.Fatalf("%d instances, want 4", len(files))
		}
		for _, b := range files {
			if _, err := ParseInstance(b); err == nil || !errors.Is(err, ErrInvalidSeries) {
				t.Fatalf("ParseInstance = %v, want ErrInvalidSeries", err)
			}
		}
	})
}
