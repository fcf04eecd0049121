// Package jpeg decodes the greyscale JPEG codestreams that DICOM
// encapsulates (ITU-T T.81): sequential DCT with Huffman coding in 8 bits
// (process 1, baseline) and 12 bits (process 4, extended), and lossless
// Huffman coding of 2 to 16 bits (process 14, selection values 1 to 7).
//
// It is pure Go so that segbridge can decode these syntaxes in process:
// a malformed codestream can only make it return an error. Every
// allocation is bounded by the image size the caller declares, not by
// sizes the codestream declares.
package jpeg

import (
	"errors"
	"fmt"
)

// ErrUnsupported is wrapped by the errors for valid JPEG this package does
// not decode: progressive, arithmetic-coded and hierarchical processes, and
// more than one component.
var ErrUnsupported = errors.New("unsupported JPEG")

// Markers (T.81 Table B.1).
const (
	markerSOF0  = 0xc0 // baseline DCT
	markerSOF1  = 0xc1 // extended sequential DCT, Huffman
	markerSOF2  = 0xc2 // progressive DCT, Huffman
	markerSOF3  = 0xc3 // lossless, Huffman
	markerDHT   = 0xc4
	markerJPG   = 0xc8
	markerDAC   = 0xcc
	markerRST0  = 0xd0
	markerRST7  = 0xd7
	markerSOI   = 0xd8
	markerEOI   = 0xd9
	markerSOS   = 0xda
	markerDQT   = 0xdb
	markerDNL   = 0xdc
	markerDRI   = 0xdd
	markerDHP   = 0xde
	markerEXP   = 0xdf
	markerAPP0  = 0xe0
	markerAPPF  = 0xef
	markerSOF55 = 0xf7 // JPEG-LS (T.87)
	markerLSE   = 0xf8 // JPEG-LS preset parameters
	markerCOM   = 0xfe
)

// Decode decodes one greyscale JPEG codestream into dst, which must hold at
// least rows*cols samples, row by row: sample (c, r) at c + cols*r. The
// codestream's frame must be rows by cols, the size the DICOM header
// declares. It returns the frame's sample precision in bits (8 or 12 for
// DCT, 2 to 16 for lossless). Lossless samples are exact, shifted left by
// the point transform as T.81 H.2 reconstructs them; DCT samples are rounded
// from a floating-point inverse DCT.
//
// Bytes after EOI are ignored, and a codestream that ends without EOI after
// complete entropy-coded data is accepted: real encoders do both.
func Decode(src []byte, rows, cols int, dst []uint16) (precision int, err error) {
	if rows <= 0 || cols <= 0 || rows > 65535 || cols > 65535 {
		return 0, fmt.Errorf("jpeg: image size %dx%d is outside 1..65535", cols, rows)
	}
	if len(dst) < rows*cols {
		return 0, fmt.Errorf("jpeg: %d samples of room for a %dx%d image", len(dst), cols, rows)
	}
	d := &decoder{src: src, rows: rows, cols: cols, dst: dst[:rows*cols]}
	if err := d.decode(); err != nil {
		return 0, fmt.Errorf("jpeg: %w", err)
	}
	return d.precision, nil
}

// decoder holds the state of one Decode call.
type decoder struct {
	src        []byte
	pos        int
	rows, cols int
	dst        []uint16

	sof       byte // the SOF marker seen, 0 before the frame header
	precision int
	compID    byte
	quantSel  int

	quant    [4][64]int32 // zig-zag order
	quantSet [4]bool
	huff     [2][4]huffTable // [class][id]: class 0 DC/lossless, 1 AC
	huffSet  [2][4]bool
	restart  int // MCUs per restart interval, 0 when off
}

func (d *decoder) decode() error {
	if len(d.src) < 2 || d.src[0] != 0xff || d.src[1] != markerSOI {
		return errors.New("not a JPEG codestream: it does not start with the SOI marker FF D8")
	}
	d.pos = 2
	for {
		m, err := d.nextMarker()
		if err != nil {
			return err
		}
		switch {
		case m == markerSOS:
			if d.sof == 0 {
				return errors.New("scan (SOS) before the frame header (SOF)")
			}
			// One component makes one scan in the sequential and lossless
			// processes; what follows it (EOI, padding) is not read.
			return d.scan()
		case m == markerEOI:
			return errors.New("codestream ends (EOI) before any scan")
		case m == markerSOI:
			return errors.New("second SOI marker before any scan")
		case m >= markerRST0 && m <= markerRST7:
			return fmt.Errorf("restart marker RST%d outside a scan", m-markerRST0)
		}
		seg, err := d.segment()
		if err != nil {
			return fmt.Errorf("marker FF %02X: %w", m, err)
		}
		switch {
		case m == markerSOF0 || m == markerSOF1 || m == markerSOF3:
			err = d.frameHeader(m, seg)
		case m == markerSOF2:
			err = fmt.Errorf("%w: progressive DCT (SOF2) is not supported; DICOM MR images are sequential or lossless", ErrUnsupported)
		case m == markerDHP || m == markerEXP || (m >= 0xc5 && m <= 0xc7) || (m >= 0xcd && m <= 0xcf):
			err = fmt.Errorf("%w: hierarchical JPEG (marker FF %02X) is not supported", ErrUnsupported, m)
		case m >= 0xc9 && m <= 0xcb || m == markerDAC:
			err = fmt.Errorf("%w: arithmetic-coded JPEG (marker FF %02X) is not supported", ErrUnsupported, m)
		case m == markerSOF55 || m == markerLSE:
			err = fmt.Errorf("%w: this is a JPEG-LS codestream (marker FF %02X), not JPEG (T.81)", ErrUnsupported, m)
		case m == markerDHT:
			err = d.huffmanTables(seg)
		case m == markerDQT:
			err = d.quantTables(seg)
		case m == markerDRI:
			if len(seg) != 2 {
				err = fmt.Errorf("DRI segment of %d bytes, not 2", len(seg))
			} else {
				d.restart = int(seg[0])<<8 | int(seg[1])
			}
		case m == markerDNL:
			err = errors.New("DNL marker before the scan")
		case m >= markerAPP0 && m <= markerAPPF || m == markerCOM:
			// Application data and comments do not change the image.
		case m == markerJPG || m >= 0xf0 && m <= 0xfd:
			err = fmt.Errorf("%w: JPEG extension marker FF %02X", ErrUnsupported, m)
		default:
			err = fmt.Errorf("unknown marker FF %02X", m)
		}
		if err != nil {
			return err
		}
	}
}

// nextMarker reads the next marker, skipping fill bytes (FF) before it.
func (d *decoder) nextMarker() (byte, error) {
	if d.pos >= len(d.src) {
		return 0, fmt.Errorf("codestream ends at byte %d before any scan", d.pos)
	}
	if d.src[d.pos] != 0xff {
		return 0, fmt.Errorf("byte %d is %02X where a marker (FF) should start", d.pos, d.src[d.pos])
	}
	for d.pos < len(d.src) && d.src[d.pos] == 0xff {
		d.pos++
	}
	if d.pos >= len(d.src) {
		return 0, fmt.Errorf("codestream ends at byte %d inside a marker", d.pos)
	}
	m := d.src[d.pos]
	d.pos++
	if m == 0 {
		return 0, fmt.Errorf("byte %d: FF 00 where a marker should be", d.pos-2)
	}
	return m, nil
}

// segment returns the parameters of the marker segment at d.pos (after its
// two-byte length) and moves past it.
func (d *decoder) segment() ([]byte, error) {
	if d.pos+2 > len(d.src) {
		return nil, errors.New("codestream ends inside the segment length")
	}
	n := int(d.src[d.pos])<<8 | int(d.src[d.pos+1])
	if n < 2 || d.pos+n > len(d.src) {
		return nil, fmt.Errorf("segment length %d at byte %d runs past the %d-byte codestream", n, d.pos, len(d.src))
	}
	seg := d.src[d.pos+2 : d.pos+n]
	d.pos += n
	return seg, nil
}

// frameHeader reads SOF0, SOF1 or SOF3 (T.81 B.2.2).
func (d *decoder) frameHeader(m byte, seg []byte) error {
	if d.sof != 0 {
		return errors.New("second frame header (SOF)")
	}
	if len(seg) < 6 {
		return fmt.Errorf("frame header of %d bytes", len(seg))
	}
	p, y, x, nf := int(seg[0]), int(seg[1])<<8|int(seg[2]), int(seg[3])<<8|int(seg[4]), int(seg[5])
	switch {
	case m == markerSOF0 && p != 8:
		return fmt.Errorf("baseline frame (SOF0) of precision %d, not 8", p)
	case m == markerSOF1 && p != 8 && p != 12:
		return fmt.Errorf("extended frame (SOF1) of precision %d, not 8 or 12", p)
	case m == markerSOF3 && (p < 2 || p > 16):
		return fmt.Errorf("lossless frame (SOF3) of precision %d, not 2..16", p)
	}
	if nf != 1 {
		return fmt.Errorf("%w: the frame has %d components; colour JPEG is not an MR image, only one (greyscale) component is decoded", ErrUnsupported, nf)
	}
	if len(seg) != 6+3*nf {
		return fmt.Errorf("frame header of %d bytes for %d component", len(seg), nf)
	}
	if y == 0 {
		return fmt.Errorf("%w: frame height 0 (to be given by a DNL marker)", ErrUnsupported)
	}
	if y != d.rows || x != d.cols {
		return fmt.Errorf("frame is %dx%d pixels, the DICOM header says %dx%d (Columns x Rows)", x, y, d.cols, d.rows)
	}
	d.compID = seg[6]
	if h, v := seg[7]>>4, seg[7]&15; h < 1 || h > 4 || v < 1 || v > 4 {
		return fmt.Errorf("sampling factors %dx%d outside 1..4", h, v)
	}
	d.quantSel = int(seg[8])
	if d.quantSel > 3 || (m == markerSOF3 && d.quantSel != 0) {
		return fmt.Errorf("quantisation table selector %d", d.quantSel)
	}
	d.sof, d.precision = m, p
	return nil
}

// quantTables reads DQT (T.81 B.2.4.1): 8- or 16-bit tables.
func (d *decoder) quantTables(seg []byte) error {
	for len(seg) > 0 {
		pq, tq := seg[0]>>4, int(seg[0]&15)
		if pq > 1 || tq > 3 {
			return fmt.Errorf("quantisation table with precision %d and id %d", pq, tq)
		}
		n := 64 * (1 + int(pq))
		if len(seg) < 1+n {
			return fmt.Errorf("quantisation table %d of %d bytes, needs %d", tq, len(seg)-1, n)
		}
		for k := range 64 {
			if pq == 0 {
				d.quant[tq][k] = int32(seg[1+k])
			} else {
				d.quant[tq][k] = int32(seg[1+2*k])<<8 | int32(seg[2+2*k])
			}
		}
		d.quantSet[tq] = true
		seg = seg[1+n:]
	}
	return nil
}

// huffmanTables reads DHT (T.81 B.2.4.2).
func (d *decoder) huffmanTables(seg []byte) error {
	for len(seg) > 0 {
		if len(seg) < 17 {
			return fmt.Errorf("Huffman table of %d bytes", len(seg))
		}
		tc, th := int(seg[0]>>4), int(seg[0]&15)
		if tc > 1 || th > 3 {
			return fmt.Errorf("Huffman table of class %d and id %d", tc, th)
		}
		var counts [16]int
		total := 0
		for i := range counts {
			counts[i] = int(seg[1+i])
			total += counts[i]
		}
		if total > 256 || len(seg) < 17+total {
			return fmt.Errorf("Huffman table %d/%d holds %d codes in %d bytes", tc, th, total, len(seg)-17)
		}
		if err := d.huff[tc][th].build(counts, seg[17:17+total]); err != nil {
			return fmt.Errorf("Huffman table %d/%d: %w", tc, th, err)
		}
		d.huffSet[tc][th] = true
		seg = seg[17+total:]
	}
	return nil
}

// scan reads the scan header (T.81 B.2.3) and decodes the scan.
func (d *decoder) scan() error {
	seg, err := d.segment()
	if err != nil {
		return fmt.Errorf("scan header: %w", err)
	}
	if len(seg) < 1 {
		return errors.New("empty scan header")
	}
	ns := int(seg[0])
	if ns != 1 || len(seg) != 4+2*ns {
		return fmt.Errorf("scan header for %d components in %d bytes; the frame has one", ns, len(seg))
	}
	if seg[1] != d.compID {
		return fmt.Errorf("scan names component %d, the frame's is %d", seg[1], d.compID)
	}
	td, ta := int(seg[2]>>4), int(seg[2]&15)
	// Ss and Al matter only to lossless scans: the predictor and the point
	// transform.
	ss, al := int(seg[3]), int(seg[5]&15)
	if td > 3 || ta > 3 || !d.huffSet[0][td] {
		return fmt.Errorf("scan uses Huffman table %d, which is not defined", td)
	}
	// Se and Ah (and, for sequential DCT, Ss and Al) carry no information in
	// the processes decoded here, and real encoders write other values than
	// T.81 asks (pydicom's JPEG-lossy.dcm: a 12-bit extended scan with Se 0).
	// libjpeg only warns and decodes them as the process defines; so does
	// this package.
	if d.sof == markerSOF3 {
		if ss < 1 || ss > 7 || al >= d.precision {
			return fmt.Errorf("lossless scan with selection value %d, point transform %d (precision %d)", ss, al, d.precision)
		}
		if d.restart > 0 && d.restart%d.cols != 0 {
			return fmt.Errorf("%w: lossless restart interval of %d samples is not a whole number of %d-sample lines", ErrUnsupported, d.restart, d.cols)
		}
		return d.lossless(&d.huff[0][td], ss, al)
	}
	if !d.huffSet[1][ta] {
		return fmt.Errorf("scan uses AC Huffman table %d, which is not defined", ta)
	}
	if !d.quantSet[d.quantSel] {
		return fmt.Errorf("frame uses quantisation table %d, which is not defined", d.quantSel)
	}
	return d.sequential(&d.huff[0][td], &d.huff[1][ta], &d.quant[d.quantSel])
}

// restartMarker moves past the RSTn marker expected after restart interval
// number interval (0-based) and resets the bit reader there.
func (d *decoder) restartMarker(br *bitReader, interval int) error {
	if br.overrun() {
		return fmt.Errorf("entropy-coded data of restart interval %d ends early", interval+1)
	}
	d.pos = br.pos
	want := byte(markerRST0 + interval%8)
	if d.pos+1 >= len(d.src) || d.src[d.pos] != 0xff {
		return fmt.Errorf("restart marker RST%d missing after restart interval %d", want-markerRST0, interval+1)
	}
	for d.pos < len(d.src) && d.src[d.pos] == 0xff {
		d.pos++
	}
	if d.pos >= len(d.src) || d.src[d.pos] != want {
		got := "the end"
		if d.pos < len(d.src) {
			got = fmt.Sprintf("marker FF %02X", d.src[d.pos])
		}
		return fmt.Errorf("restart marker RST%d expected after restart interval %d, found %s", want-markerRST0, interval+1, got)
	}
	d.pos++
	br.reset(d.src, d.pos)
	return nil
}
