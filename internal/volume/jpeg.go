package volume

import (
	"encoding/binary"
	"fmt"

	"github.com/segbridge/segbridge/internal/jpeg"
)

// jpegFrames decodes the JPEG (T.81) codestream of each frame into its place
// in out, packed as native little-endian pixel data of format pix. The
// samples go through one scratch buffer of one frame's size, so decoding
// costs the decoded instance plus one frame.
func jpegFrames(data [][]byte, rows, cols int, pix pixelFormat, out []byte) error {
	scratch := make([]uint16, rows*cols)
	plane := rows * cols * pix.bytesPerSample()
	for f, d := range data {
		if _, err := jpeg.Decode(d, rows, cols, scratch); err != nil {
			return fmt.Errorf("frame %d: %w", f+1, err)
		}
		PackSamples(scratch, out[f*plane:(f+1)*plane], pix.bitsAllocated, pix.bitsStored, pix.highBit)
	}
	return nil
}

// PackSamples writes decoded samples as native little-endian pixel data into
// dst, the layout the Frame doc describes: following PS3.5 8.2.4 the DICOM
// header wins over the codestream's precision, so each sample keeps its low
// bitsStored bits (the two's complement pattern of a signed value), shifted
// up to highBit, in a bitsAllocated-bit sample. Every decoder of compressed
// frames packs its output with it: internal/jpeg's here, OpenJPEG's and
// CharLS's in internal/codec.
func PackSamples[T int32 | uint16 | uint8](vals []T, dst []byte, bitsAllocated, bitsStored, highBit int) {
	mask := uint32(1)<<uint(bitsStored) - 1
	if bitsStored >= 32 {
		mask = ^uint32(0)
	}
	shift := uint(highBit + 1 - bitsStored)
	switch bitsAllocated {
	case 8:
		for i, v := range vals {
			dst[i] = byte((uint32(v) & mask) << shift)
		}
	case 16:
		for i, v := range vals {
			binary.LittleEndian.PutUint16(dst[2*i:], uint16((uint32(v)&mask)<<shift))
		}
	default:
		for i, v := range vals {
			binary.LittleEndian.PutUint32(dst[4*i:], (uint32(v)&mask)<<shift)
		}
	}
}
