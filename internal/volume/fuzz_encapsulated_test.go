package volume

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// boundedDecoder is a FrameDecoder for fuzzing: it checks what the parser
// hands it and fills the frame.
type boundedDecoder struct{ input int }

func (d boundedDecoder) DecodeFrame(_ context.Context, f *Frame, dst []byte) error {
	if len(f.Data) > d.input {
		return fmt.Errorf("frame of %d bytes from an input of %d", len(f.Data), d.input)
	}
	if len(dst) != f.Size() {
		return fmt.Errorf("dst of %d bytes for a %d-byte frame", len(dst), f.Size())
	}
	if len(f.Data) < 4 {
		return &permanentErr{"codestream too short"}
	}
	for i := range dst {
		dst[i] = f.Data[i%len(f.Data)]
	}
	return nil
}

// FuzzParseInstance_Encapsulated feeds encapsulated pixel data (RLE and
// JPEG 2000, through a decoder that checks its frames) to the parser: it
// never panics, never hands the decoder more than the input, and every
// error wraps ErrInvalidSeries.
func FuzzParseInstance_Encapsulated(f *testing.F) {
	s := axialSynth(0)
	s.raw = u16(le, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000)
	frame := rleFrame(s.raw, 2)
	f.Add(encapsulatedFile(f, s, tsRLELossless, [][]byte{nil, frame}))
	f.Add(encapsulatedFile(f, s, tsRLELossless, [][]byte{nil, frame[:31], frame[31:]}))

	j := axialSynth(1)
	j.ts = tsJPEGBaseline
	cs := append(append([]byte{}, j2kSOC...), "codestream bytes"...)
	f.Add(encapsulatedFile(f, j, tsJ2KLossless, [][]byte{nil, cs}))
	f.Add(encapsulatedFile(f, j, tsJ2K, [][]byte{{0, 0, 0, 0}, cs[:7], cs[7:]}))

	m := axialSynth(2)
	m.frames = "2"
	m.raw = make([]byte, 48)
	f.Add(encapsulatedFile(f, m, tsRLELossless, [][]byte{offsetTable([][]byte{frame}, [][]byte{frame}), frame, frame}))

	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := Parser{Decoder: boundedDecoder{len(data)}, MaxBytes: 1 << 20}.ParseInstance(context.Background(), data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSeries) {
				t.Fatalf("error %q does not wrap ErrInvalidSeries", err)
			}
			return
		}
		if got := len(in.Pixels()); got != in.Rows*in.Cols {
			t.Fatalf("Pixels() has %d values for %dx%d", got, in.Cols, in.Rows)
		}
	})
}

// FuzzDecodeRLE: any RLE frame decodes or fails, within its buffer.
func FuzzDecodeRLE(f *testing.F) {
	f.Add(rleFrame(u16(le, 1, 2, 3, 3, 3, 3, 0xffff, 0), 2), 2, 8)
	f.Add(rleFrame([]byte{9, 9, 9, 9, 9, 1}, 1), 1, 6)
	f.Fuzz(func(t *testing.T, src []byte, bps, pixels int) {
		if bps != 1 && bps != 2 && bps != 4 {
			bps = 2
		}
		pixels = min(max(pixels, 0), 1<<12)
		dst := make([]byte, pixels*bps)
		_ = decodeRLE(src, dst, bps)
	})
}
