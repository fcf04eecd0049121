package jpeg

import (
	"errors"
	"fmt"
)

// lookBits is how many bits the fast path of a Huffman decode looks at: the
// codes of most symbols are that short.
const lookBits = 9

// huffTable is one Huffman table, built as T.81 Annex C and F.2.2.3 do,
// with a lookup of the codes up to lookBits long.
type huffTable struct {
	// fast[peek] is length<<8 | symbol for a code of at most lookBits bits
	// that starts peek; 0 when the code is longer.
	fast    [1 << lookBits]uint16
	maxCode [17]int32 // largest code of each length, -1 when none
	valPtr  [17]int32 // index in vals of the first code of each length, minus that code
	vals    [256]byte
}

// build makes the table from the counts of codes of each length 1..16 and
// their symbols, refusing counts that overfill the code space.
func (h *huffTable) build(counts [16]int, symbols []byte) error {
	*h = huffTable{}
	copy(h.vals[:], symbols)
	code, k := int32(0), 0
	for l := 1; l <= 16; l++ {
		n := counts[l-1]
		h.maxCode[l] = -1
		if n > 0 {
			h.valPtr[l] = int32(k) - code
			for range n {
				if code >= 1<<l {
					return fmt.Errorf("%d codes of up to %d bits overfill the code space", k+1, l)
				}
				if l <= lookBits {
					shift := lookBits - l
					for i := code << shift; i < (code+1)<<shift; i++ {
						h.fast[i] = uint16(l)<<8 | uint16(symbols[k])
					}
				}
				code++
				k++
			}
			h.maxCode[l] = code - 1
		}
		code <<= 1
	}
	return nil
}

// bitReader reads the bits of entropy-coded data (T.81 F.2.2.5), undoing
// the byte stuffing (FF 00). At a marker or at the end of the data it goes
// on with zero bits and counts them, so that a decode that used any can be
// told to have run past the data.
type bitReader struct {
	src     []byte
	pos     int    // next byte of src to read
	acc     uint64 // bits read, the next one at bit n-1
	n       int
	pad     int  // zero bits appended after the data ended
	stopped bool // at a marker or the end of src
}

func (b *bitReader) reset(src []byte, pos int) {
	*b = bitReader{src: src, pos: pos}
}

// fill tops acc up to more than 56 bits.
func (b *bitReader) fill() {
	for b.n <= 56 {
		c := byte(0)
		if !b.stopped && b.pos < len(b.src) {
			c = b.src[b.pos]
			if c == 0xff {
				switch {
				case b.pos+1 < len(b.src) && b.src[b.pos+1] == 0:
					b.pos += 2
				case b.pos+1 < len(b.src) && b.src[b.pos+1] == 0xff:
					// A fill byte before a marker.
					b.pos++
					continue
				default:
					// A marker: b.pos stays on it for the caller.
					b.stopped = true
					c = 0
				}
			} else {
				b.pos++
			}
		} else {
			b.stopped = true
		}
		if b.stopped {
			b.pad += 8
		}
		b.acc = b.acc<<8 | uint64(c)
		b.n += 8
	}
}

// overrun reports whether bits past the end of the data were used.
func (b *bitReader) overrun() bool { return b.pad > b.n }

// bits returns the next n (0..16) bits.
func (b *bitReader) bits(n int) int32 {
	if n == 0 {
		return 0
	}
	if b.n < n {
		b.fill()
	}
	b.n -= n
	return int32(b.acc>>uint(b.n)) & (1<<n - 1)
}

var errBadCode = errors.New("invalid Huffman code in the entropy-coded data")

// decode reads one Huffman-coded symbol.
func (b *bitReader) decode(h *huffTable) (byte, error) {
	if b.n < 16 {
		b.fill()
	}
	peek := int32(b.acc>>uint(b.n-16)) & 0xffff
	if e := h.fast[peek>>(16-lookBits)]; e != 0 {
		b.n -= int(e >> 8)
		return byte(e), nil
	}
	for l := lookBits + 1; l <= 16; l++ {
		code := peek >> (16 - l)
		if code <= h.maxCode[l] {
			b.n -= l
			return h.vals[(h.valPtr[l]+code)&0xff], nil
		}
	}
	return 0, errBadCode
}

// receiveExtend reads an s-bit (0..16) magnitude and turns it into the
// signed value it codes (T.81 F.2.2.1, EXTEND).
func (b *bitReader) receiveExtend(s int) int32 {
	if s == 0 {
		return 0
	}
	v := b.bits(s)
	if v < 1<<(s-1) {
		v += -1<<s + 1
	}
	return v
}
