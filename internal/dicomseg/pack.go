package dicomseg

import (
	"fmt"
	"math"

	"github.com/segbridge/segbridge/internal/checked"
)

// maxPixelDataLength is the most bytes a PixelData element of defined
// length holds: its length is 32 bits, 0xFFFFFFFF means undefined, and a
// value's length is even.
const maxPixelDataLength = 0xFFFFFFFE

// pixelDataLength returns the bytes of PixelData for frames frames of rows x
// cols pixels of bits bits each (1 for BINARY, 8 for FRACTIONAL), packed
// without padding between frames and padded to even length, or an error
// when NumberOfFrames or that length cannot be written in a SEG.
func pixelDataLength(frames, rows, cols, bits int) (int, error) {
	if frames > math.MaxInt32 {
		return 0, fmt.Errorf("%d frames: NumberOfFrames (IS) holds at most %d", frames, math.MaxInt32)
	}
	nbits, ok := checked.Mul(frames, rows, cols, bits)
	n := nbits / 8
	if nbits%8 != 0 {
		n++
	}
	n += n % 2
	if !ok || n > maxPixelDataLength {
		return 0, fmt.Errorf("%d frames of %dx%d pixels of %d bits need more than the %d bytes of pixel data a DICOM element holds",
			frames, cols, rows, bits, maxPixelDataLength)
	}
	return n, nil
}

// frameRef is one frame of a SEG: which segment it belongs to and which
// source slice it lies on.
type frameRef struct {
	segment int   // SegmentNumber, 1-based
	label   uint8 // voxel value of the segment in the label volume
	k       int   // index of the source slice in the volume
}

// packBinary returns the BINARY pixel data of frames: pixel p of frame f is bit
// f*rows*cols + p, least significant bit first within a byte (PS3.5 8.1.1 and
// D.2), with no padding between frames. The result is padded to even length,
// n bytes from pixelDataLength.
func packBinary(labels []uint8, cols, rows int, frames []frameRef, n int) []byte {
	npix := cols * rows
	buf := make([]byte, n)
	for f, fr := range frames {
		plane := labels[fr.k*npix : (fr.k+1)*npix]
		base := f * npix
		for p, l := range plane {
			if l == fr.label {
				bit := base + p
				buf[bit>>3] |= 1 << (bit & 7)
			}
		}
	}
	return buf
}
