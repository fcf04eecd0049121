package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// packBits encodes p as PackBits: runs of three or more equal bytes as
// replicate runs, the rest as literal runs.
func packBits(p []byte) []byte {
	var out []byte
	for i := 0; i < len(p); {
		j := i + 1
		for j < len(p) && j-i < 128 && p[j] == p[i] {
			j++
		}
		if j-i >= 3 {
			out = append(out, byte(int8(1-(j-i))), p[i])
			i = j
			continue
		}
		j = i
		for j < len(p) && j-i < 128 && !(j+2 < len(p) && p[j] == p[j+1] && p[j] == p[j+2]) {
			j++
		}
		out = append(out, byte(j-i-1))
		out = append(out, p[i:j]...)
		i = j
	}
	return out
}

// rleFrame encodes native little-endian samples of bps bytes as one RLE
// Lossless frame (PS3.5 G).
func rleFrame(samples []byte, bps int) []byte {
	n := len(samples) / bps
	header := make([]byte, 64)
	le.PutUint32(header, uint32(bps))
	var body []byte
	for s := range bps {
		le.PutUint32(header[4+4*s:], uint32(64+len(body)))
		plane := make([]byte, n)
		for i := range plane {
			plane[i] = samples[i*bps+bps-1-s]
		}
		body = append(body, packBits(plane)...)
		if len(body)%2 == 1 {
			body = append(body, 0x80) // a no-op, as encoders pad
		}
	}
	return append(header, body...)
}

// encapsulatedFile encodes s and swaps its native PixelData for encapsulated
// items (items[0] the Basic Offset Table) and its transfer syntax for ts,
// which must be as long as s.ts.
func encapsulatedFile(t testing.TB, s synth, ts string, items [][]byte) []byte {
	t.Helper()
	if len(ts) != len(s.ts) {
		t.Fatalf("transfer syntax %s is not as long as %s", ts, s.ts)
	}
	b := s.encode(t)
	b = bytes.Replace(b, []byte(s.ts), []byte(ts), 1)
	raw := len(s.raw) + len(s.raw)%2
	if s.raw == nil {
		raw = s.rows * s.cols * s.bits / 8
	}
	// PixelData, the last element: tag, VR, 2 reserved bytes, length, value.
	i := len(b) - raw - 12
	if !bytes.Equal(b[i:i+6], []byte{0xe0, 0x7f, 0x10, 0x00, 'O', 'W'}) && !bytes.Equal(b[i:i+6], []byte{0xe0, 0x7f, 0x10, 0x00, 'O', 'B'}) {
		t.Fatalf("no PixelData element at byte %d", i)
	}
	out := append([]byte{}, b[:i]...)
	out = append(out, 0xe0, 0x7f, 0x10, 0x00, 'O', 'B', 0, 0, 0xff, 0xff, 0xff, 0xff)
	for _, it := range items {
		out = append(out, 0xfe, 0xff, 0x00, 0xe0)
		out = le.AppendUint32(out, uint32(len(it)))
		out = append(out, it...)
	}
	return append(out, 0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0)
}

// offsetTable returns a Basic Offset Table for frames each made of the
// given fragments.
func offsetTable(frames ...[][]byte) []byte {
	var out []byte
	off := 0
	for _, f := range frames {
		out = le.AppendUint32(out, uint32(off))
		for _, frag := range f {
			off += 8 + len(frag)
		}
	}
	return out
}

// items flattens an offset table and frames into encapsulated items.
func items(bot []byte, frames ...[][]byte) [][]byte {
	out := [][]byte{bot}
	for _, f := range frames {
		out = append(out, f...)
	}
	return out
}

func TestSplitFrames(t *testing.T) {
	soc := func(s string) []byte { return append(append([]byte{}, j2kSOC...), s...) }
	a, b, c := [][]byte{[]byte("a1"), []byte("a2")}, [][]byte{[]byte("b1")}, [][]byte{[]byte("c1"), []byte("c2"), []byte("c3")}
	tests := []struct {
		name    string
		items   [][]byte
		frames  int
		ts      string
		want    []string
		wantErr string
	}{
		{name: "one frame of several fragments", items: items(nil, a), frames: 1, ts: tsRLELossless, want: []string{"a1a2"}},
		{name: "offset table", items: items(offsetTable(a, b, c), a, b, c), frames: 3, ts: tsRLELossless, want: []string{"a1a2", "b1", "c1c2c3"}},
		{name: "no offset table, one fragment per frame", items: items(nil, b, b, b), frames: 3, ts: tsRLELossless, want: []string{"b1", "b1", "b1"}},
		{name: "no offset table, JPEG 2000 start markers", items: items(nil, [][]byte{soc("x"), []byte("y")}, [][]byte{soc("z")}),
			frames: 2, ts: tsJ2KLossless, want: []string{string(soc("x")) + "y", string(soc("z"))}},
		{name: "wrong offset table, one fragment per frame", items: items([]byte{0, 0, 0, 0, 9, 0, 0, 0}, b, b), frames: 2, ts: tsRLELossless,
			want: []string{"b1", "b1"}},
		{name: "no offset table, RLE fragments", items: items(nil, a, b), frames: 2, ts: tsRLELossless,
			wantErr: "cannot tell which of the 3 fragments make which of the 2 frames: the Basic Offset Table is empty"},
		{name: "offset table pointing inside a fragment", items: items([]byte{0, 0, 0, 0, 3, 0, 0, 0}, a, b), frames: 2, ts: tsRLELossless,
			wantErr: "offset 3 of frame 2 is not where a fragment starts"},
		{name: "offset table not starting at 0", items: items([]byte{10, 0, 0, 0, 20, 0, 0, 0}, a, b), frames: 2, ts: tsRLELossless,
			wantErr: "the Basic Offset Table does not start at the first fragment"},
		{name: "offset table past the end", items: items(le.AppendUint32([]byte{0, 0, 0, 0}, 1000), a, b), frames: 2, ts: tsRLELossless,
			wantErr: "offset 1000 of frame 2"},
		{name: "too few start markers", items: items(nil, [][]byte{soc("x"), []byte("y"), []byte("z")}), frames: 2, ts: tsJ2K,
			wantErr: "1 fragments start a JPEG 2000 codestream"},
		{name: "more frames than fragments", items: items(nil, b), frames: 2, ts: tsRLELossless,
			wantErr: "NumberOfFrames is 2 but the encapsulated pixel data holds only 1 fragments"},
		{name: "no fragment", items: [][]byte{nil}, frames: 1, ts: tsRLELossless, wantErr: "holds no fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitFrames(tt.items, tt.frames, tt.ts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, f := range got {
				s = append(s, string(f))
			}
			if fmt.Sprint(s) != fmt.Sprint(tt.want) {
				t.Errorf("frames %q, want %q", s, tt.want)
			}
		})
	}
}

func TestDecodeRLE(t *testing.T) {
	samples := u16(le, 0, 1, 0x1234, 0xffff, 0xffff, 0xffff, 0xffff, 7, 0x8000, 0x00ff, 300, 300)
	good := rleFrame(samples, 2)
	tests := []struct {
		name    string
		src     []byte
		bps     int
		want    []byte
		wantErr string
	}{
		{name: "16-bit", src: good, bps: 2, want: samples},
		{name: "8-bit", src: rleFrame([]byte{1, 1, 1, 1, 2, 3, 4, 4, 4, 9, 9, 0}, 1), bps: 1, want: []byte{1, 1, 1, 1, 2, 3, 4, 4, 4, 9, 9, 0}},
		{name: "32-bit", src: rleFrame(u32(le, 1, 0xdeadbeef, 0, 0), 4), bps: 4, want: u32(le, 1, 0xdeadbeef, 0, 0)},
		{name: "short header", src: good[:40], bps: 2, wantErr: "shorter than its 64-byte header"},
		{name: "wrong segment count", src: good, bps: 1, wantErr: "RLE frame has 2 segments, 8-bit greyscale pixels need 1"},
		{name: "segment past the end", src: func() []byte {
			b := bytes.Clone(good)
			le.PutUint32(b[8:], 5000)
			return b
		}(), bps: 2, wantErr: "RLE segment 1 has offsets 64..5000"},
		{name: "truncated segment", src: good[:len(good)-4], bps: 2, wantErr: "RLE segment 2:"},
		{name: "first segment not after the header", src: func() []byte {
			b := bytes.Clone(good)
			le.PutUint32(b[4:], 60)
			return b
		}(), bps: 2, wantErr: "RLE segment 1 has offsets 60"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 12
			if tt.bps == 4 {
				n = 4
			}
			dst := make([]byte, n*tt.bps)
			err := decodeRLE(tt.src, dst, tt.bps)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, tt.want) {
				t.Errorf("decoded % x, want % x", dst, tt.want)
			}
		})
	}
}

func TestParseInstance_RLESynthetic(t *testing.T) {
	s := axialSynth(0)
	s.raw = u16(le, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000)
	s.slope, s.intercept = "2", "-5"
	frame := rleFrame(s.raw, 2)
	half := len(frame) / 2
	for _, tc := range []struct {
		name  string
		items [][]byte
	}{
		{"one fragment", [][]byte{nil, frame}},
		{"two fragments, odd lengths", [][]byte{nil, frame[:half|1], frame[half|1:]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := ParseInstance(encapsulatedFile(t, s, tsRLELossless, tc.items))
			if err != nil {
				t.Fatal(err)
			}
			want := []float32{-5, -3, -1, 1, 3, 5, 7, 9, 11, 13, 15, 1995}
			if got := in.Pixels(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Pixels() = %v, want %v", got, want)
			}
		})
	}
}

// fakeDecoder fills each frame with the byte of its number (1 for a
// single frame) or fails as told.
type fakeDecoder struct {
	mu     sync.Mutex
	seen   []*Frame
	err    func(f *Frame) error
	panics bool
}

func (d *fakeDecoder) DecodeFrame(ctx context.Context, f *Frame, dst []byte) error {
	d.mu.Lock()
	d.seen = append(d.seen, f)
	d.mu.Unlock()
	if d.panics {
		panic("decoder bug")
	}
	if d.err != nil {
		if err := d.err(f); err != nil {
			return err
		}
	}
	if len(dst) != f.Size() {
		return fmt.Errorf("dst of %d bytes for a %d-byte frame", len(dst), f.Size())
	}
	for i := range dst {
		dst[i] = byte(max(f.Number, 1))
	}
	return nil
}

// permanentErr is what codec.DecodeError looks like to this package.
type permanentErr struct{ msg string }

func (e *permanentErr) Error() string { return e.msg }
func (e *permanentErr) Unwrap() error { return ErrInvalidSeries }

func TestParser_JPEG2000ThroughTheDecoder(t *testing.T) {
	s := axialSynth(0)
	s.ts = tsJPEGBaseline // as long as the JPEG 2000 UIDs; replaced below
	codestream := append(append([]byte{}, j2kSOC...), "codestream"...)
	file := encapsulatedFile(t, s, tsJ2K, [][]byte{nil, codestream[:5], codestream[5:]})

	t.Run("the decoder gets the frame and the header's layout", func(t *testing.T) {
		d := &fakeDecoder{}
		in, err := Parser{Decoder: d}.ParseInstance(context.Background(), file)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.seen) != 1 {
			t.Fatalf("decoder saw %d frames", len(d.seen))
		}
		f := d.seen[0]
		if string(f.Data) != string(codestream) || f.Rows != 3 || f.Cols != 4 || f.BitsAllocated != 16 ||
			f.BitsStored != 16 || f.HighBit != 15 || f.Signed || f.SamplesPerPixel != 1 || f.TransferSyntax != tsJ2K ||
			f.SOPInstanceUID != s.sop || f.Number != 0 {
			t.Errorf("frame %+v", f)
		}
		if got := in.Pixels(); got[0] != 257 || got[11] != 257 {
			t.Errorf("Pixels() = %v, want 0x0101 everywhere", got)
		}
	})
	t.Run("no decoder", func(t *testing.T) {
		_, err := ParseInstance(file)
		if !errors.Is(err, ErrInvalidSeries) || !strings.Contains(err.Error(), "needs a frame decoder, and none was given") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("the frame's fault fails the series, naming instance and syntax", func(t *testing.T) {
		d := &fakeDecoder{err: func(*Frame) error {
			return &permanentErr{"JPEG 2000 decoder crashed: killed by signal segmentation fault"}
		}}
		_, err := Parser{Decoder: d}.ParseInstance(context.Background(), file)
		want := "invalid series: instance " + s.sop + ": JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91): JPEG 2000 decoder crashed"
		if !errors.Is(err, ErrInvalidSeries) || !strings.HasPrefix(fmt.Sprint(err), want) {
			t.Fatalf("error %v, want it to start %q", err, want)
		}
	})
	t.Run("a decoder that cannot run is not the series' fault", func(t *testing.T) {
		d := &fakeDecoder{err: func(*Frame) error { return errors.New("fork: resource temporarily unavailable") }}
		_, err := Parser{Decoder: d}.ParseInstance(context.Background(), file)
		if err == nil || errors.Is(err, ErrInvalidSeries) || !strings.Contains(err.Error(), "fork: resource") {
			t.Fatalf("error %v, want a transient error", err)
		}
	})
	t.Run("a panicking decoder is an error", func(t *testing.T) {
		_, err := Parser{Decoder: &fakeDecoder{panics: true}}.ParseInstance(context.Background(), file)
		if err == nil || !strings.Contains(err.Error(), "frame decoder panicked: decoder bug") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("a cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		d := &fakeDecoder{err: func(*Frame) error { return context.Canceled }}
		_, err := Parser{Decoder: d}.ParseInstance(ctx, file)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalidSeries) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	})
	t.Run("decoded size over the limit", func(t *testing.T) {
		d := &fakeDecoder{}
		_, err := Parser{Decoder: d, MaxBytes: 23}.ParseInstance(context.Background(), file)
		if !errors.Is(err, ErrInvalidSeries) || !strings.Contains(err.Error(), "would decode to 24 bytes, over the limit of 23") || len(d.seen) != 0 {
			t.Fatalf("error %v after %d frames, want the size refused before decoding", err, len(d.seen))
		}
	})
}

func TestParser_MultiFrameJPEG2000(t *testing.T) {
	// An enhanced instance's frames go to the decoder concurrently; each
	// lands in its own place.
	s := axialSynth(0)
	s.ts = tsJPEGBaseline
	s.frames = "5"
	s.raw = make([]byte, 5*24)
	var frames [][]byte
	for f := range 5 {
		frames = append(frames, append(append([]byte{}, j2kSOC...), byte(f)))
	}
	var bot []byte
	for f := range frames {
		bot = le.AppendUint32(bot, uint32(f*(8+len(frames[0]))))
	}
	in := &Instance{}
	src := &pixelSource{ctx: context.Background(), p: Parser{Decoder: &fakeDecoder{}, Concurrency: 3},
		scan: fileScan{ts: tsHTJ2K, items: append([][]byte{bot}, frames...)}}
	in.Rows, in.Cols, in.SOPInstanceUID = 3, 4, "1.2.3"
	in.pix = pixelFormat{bitsAllocated: 16, bitsStored: 16, highBit: 15}
	data, err := splitFrames(src.scan.items, 5, src.scan.ts)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 5*24)
	if err := src.decodeFrames(in, data, out, 24); err != nil {
		t.Fatal(err)
	}
	for f := range 5 {
		if out[f*24] != byte(f+1) || out[f*24+23] != byte(f+1) {
			t.Errorf("frame %d decoded to % x", f+1, out[f*24:f*24+24])
		}
	}
}
