package volume

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Encapsulated pixel data (PS3.5 A.4) is a sequence of items: a Basic Offset
// Table, then fragments. A frame is one or more consecutive fragments. Which
// fragments make which frame is told by the Basic Offset Table when it is
// filled in, is trivial when there is one frame or one fragment per frame,
// and otherwise can be recovered for JPEG 2000, JPEG and JPEG-LS, whose
// codestreams start with a marker of their own (SOC, SOI). Everything here
// is bounded by the input: items are slices of the file, and a frame is at
// most the file's size.

// j2kSOC starts every JPEG 2000 codestream: SOC then SIZ.
var j2kSOC = []byte{0xff, 0x4f, 0xff, 0x51}

// jp2Signature starts a JP2 file, which some writers encapsulate instead of a
// bare codestream.
var jp2Signature = []byte{0, 0, 0, 0x0c, 'j', 'P', ' ', ' '}

// jpegSOI starts every JPEG codestream: the SOI marker.
var jpegSOI = []byte{0xff, 0xd8}

// startsJ2K reports whether b starts a JPEG 2000 codestream or JP2 file.
func startsJ2K(b []byte) bool {
	return bytes.HasPrefix(b, j2kSOC) || bytes.HasPrefix(b, jp2Signature)
}

// splitFrames returns the compressed bytes of each of frames frames, given
// the items of encapsulated pixel data (items[0] is the Basic Offset Table).
// A frame of one fragment is that fragment's bytes, not a copy.
func splitFrames(items [][]byte, frames int, ts string) ([][]byte, error) {
	if len(items) < 2 {
		return nil, errors.New("encapsulated pixel data holds no fragment")
	}
	bot, frags := items[0], items[1:]
	if frames > len(frags) {
		return nil, fmt.Errorf("NumberOfFrames is %d but the encapsulated pixel data holds only %d fragments", frames, len(frags))
	}
	if frames == 1 {
		return [][]byte{join(frags)}, nil
	}
	starts, botErr := offsetTableStarts(bot, frags, frames)
	switch {
	case botErr == nil:
	case len(frags) == frames:
		starts = make([]int, frames)
		for i := range starts {
			starts[i] = i
		}
	case isJ2K(ts) || isJPEG(ts) || isJPEGLS(ts):
		// JPEG and JPEG-LS codestreams start with SOI, JPEG 2000 ones with
		// SOC; byte stuffing keeps either out of the entropy-coded data.
		starts = starts[:0]
		what, starts0 := "JPEG 2000", startsJ2K
		if !isJ2K(ts) {
			what, starts0 = "JPEG", func(b []byte) bool { return bytes.HasPrefix(b, jpegSOI) }
		}
		for i, f := range frags {
			if starts0(f) {
				starts = append(starts, i)
			}
		}
		if len(starts) != frames || starts[0] != 0 {
			return nil, fmt.Errorf("cannot tell which of the %d fragments make which of the %d frames: %v, and %d fragments start a %s codestream",
				len(frags), frames, botErr, len(starts), what)
		}
	default:
		return nil, fmt.Errorf("cannot tell which of the %d fragments make which of the %d frames: %v", len(frags), frames, botErr)
	}
	out := make([][]byte, frames)
	for f := range out {
		end := len(frags)
		if f+1 < frames {
			end = starts[f+1]
		}
		out[f] = join(frags[starts[f]:end])
	}
	return out, nil
}

// offsetTableStarts reads the Basic Offset Table: the byte offset of each
// frame's first fragment item, counted from the first fragment item. It
// returns the index of each frame's first fragment, or why the table cannot
// be used.
func offsetTableStarts(bot []byte, frags [][]byte, frames int) ([]int, error) {
	switch {
	case len(bot) == 0:
		return nil, errors.New("the Basic Offset Table is empty")
	case len(bot) != 4*frames:
		return nil, fmt.Errorf("the Basic Offset Table holds %d bytes, not 4 for each of %d frames", len(bot), frames)
	}
	starts := make([]int, 0, frames)
	var offset uint64
	next := 0
	for f := range frames {
		want := uint64(binary.LittleEndian.Uint32(bot[4*f:]))
		for next < len(frags) && offset < want {
			offset += 8 + uint64(len(frags[next]))
			next++
		}
		if offset != want || next >= len(frags) || (f > 0 && next <= starts[f-1]) {
			return nil, fmt.Errorf("the Basic Offset Table's offset %d of frame %d is not where a fragment starts", want, f+1)
		}
		starts = append(starts, next)
	}
	if starts[0] != 0 {
		return nil, errors.New("the Basic Offset Table does not start at the first fragment")
	}
	return starts, nil
}

// join returns the fragments as one byte slice, copying only when there are
// several.
func join(frags [][]byte) []byte {
	if len(frags) == 1 {
		return frags[0]
	}
	n := 0
	for _, f := range frags {
		n += len(f)
	}
	out := make([]byte, 0, n)
	for _, f := range frags {
		out = append(out, f...)
	}
	return out
}

// decodeRLE decodes one RLE Lossless frame (PS3.5 G) of single-sample pixels
// of bytesPerSample bytes into dst, little endian, as native pixel data is
// laid out: the frame's header names one segment per byte of a sample, the
// most significant first, each a PackBits stream of one byte per pixel.
func decodeRLE(src, dst []byte, bytesPerSample int) error {
	if len(src) < 64 {
		return fmt.Errorf("RLE frame of %d bytes is shorter than its 64-byte header", len(src))
	}
	n := int(binary.LittleEndian.Uint32(src))
	if n != bytesPerSample {
		return fmt.Errorf("RLE frame has %d segments, %d-bit greyscale pixels need %d", n, 8*bytesPerSample, bytesPerSample)
	}
	pixels := len(dst) / bytesPerSample
	plane := make([]byte, pixels)
	for s := range n {
		start := binary.LittleEndian.Uint32(src[4+4*s:])
		end := uint32(len(src))
		if s+1 < n {
			end = binary.LittleEndian.Uint32(src[8+4*s:])
		}
		if (s == 0 && start != 64) || start < 64 || start > end || end > uint32(len(src)) {
			return fmt.Errorf("RLE segment %d has offsets %d..%d in a frame of %d bytes", s+1, start, end, len(src))
		}
		if err := unpackBits(src[start:end], plane); err != nil {
			return fmt.Errorf("RLE segment %d: %w", s+1, err)
		}
		// Segment s holds byte s of each sample, most significant first.
		b := bytesPerSample - 1 - s
		for i, v := range plane {
			dst[i*bytesPerSample+b] = v
		}
	}
	return nil
}

// unpackBits fills dst from a PackBits stream: a header byte n, then n+1
// literal bytes when 0 <= n <= 127, or one byte repeated 1-n times when
// -127 <= n <= -1; -128 is a no-op. Bytes that would overrun dst (some
// encoders pad a segment) are dropped; a stream that ends before dst is full
// is an error.
func unpackBits(src, dst []byte) error {
	i, o := 0, 0
	for o < len(dst) {
		if i >= len(src) {
			return fmt.Errorf("segment ends after %d of %d pixels", o, len(dst))
		}
		n := int(int8(src[i]))
		i++
		switch {
		case n >= 0:
			c := n + 1
			if i+c > len(src) {
				return fmt.Errorf("literal run of %d bytes runs past the end of the segment", c)
			}
			o += copy(dst[o:], src[i:i+c])
			i += c
		case n != -128:
			if i >= len(src) {
				return errors.New("replicate run has no byte to repeat")
			}
			v := src[i]
			i++
			for c := min(1-n, len(dst)-o); c > 0; c-- {
				dst[o] = v
				o++
			}
		}
	}
	return nil
}
