package dicomseg

// frameRef is one frame of a SEG: which segment it belongs to and which
// source slice it lies on.
type frameRef struct {
	segment int   // SegmentNumber, 1-based
	label   uint8 // voxel value of the segment in the label volume
	k       int   // index of the source slice in the volume
}

// packBinary returns the BINARY pixel data of frames: pixel p of frame f is bit
// f*rows*cols + p, least significant bit first within a byte (PS3.5 8.1.1 and
// D.2), with no padding between frames. The result is padded to even length.
func packBinary(labels []uint8, cols, rows int, frames []frameRef) []byte {
	npix := cols * rows
	nbits := len(frames) * npix
	n := (nbits + 7) / 8
	n += n % 2
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
