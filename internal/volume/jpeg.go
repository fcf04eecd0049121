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
		packSamples(scratch, pix, out[f*plane:(f+1)*plane])
	}
	return nil
}

// packSamples writes decoded samples as native little-endian pixel data of
// format pix. Following PS3.5 8.2.4 the DICOM header wins over the
// codestream's precision: each sample keeps its low BitsStored bits (the
// two's complement pattern of a signed value), shifted up to HighBit, in a
// BitsAllocated-bit sample.
func packSamples(samples []uint16, pix pixelFormat, dst []byte) {
	mask := uint32(1)<<pix.bitsStored - 1
	shift := uint(pix.highBit + 1 - pix.bitsStored)
	switch pix.bitsAllocated {
	case 8:
		for i, v := range samples {
			dst[i] = byte((uint32(v) & mask) << shift)
		}
	case 16:
		for i, v := range samples {
			binary.LittleEndian.PutUint16(dst[2*i:], uint16((uint32(v)&mask)<<shift))
		}
	default:
		for i, v := range samples {
			binary.LittleEndian.PutUint32(dst[4*i:], (uint32(v)&mask)<<shift)
		}
	}
}
