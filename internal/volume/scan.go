package volume

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Why a pre-scan: suyashkumar/dicom allocates each value's buffer from the
// value length written in the file before it reads the value, so a corrupt or
// hostile 1 KiB file can make it allocate 4 GiB. checkStructure walks the
// element structure the same way the library will, without allocating, and
// rejects any length that runs past the bytes of its enclosing container, so
// that everything the library later allocates is bounded by len(data).

// maxNesting bounds how deeply sequences may nest; real objects stay below 10.
const maxNesting = 32

// isLongVL reports whether an explicit VR has two reserved bytes and a 32-bit
// length, exactly as suyashkumar/dicom v1.1.0 reads them (it treats OV, SV and
// UV as short, so this walker does too: the point is to agree with the parser
// that follows).
func isLongVL(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OW", "SQ", "UN", "UC", "UR", "UT":
		return true
	}
	return false
}

// isKnownVR reports whether vr is one of the value representations of PS3.5 6.2.
func isKnownVR(vr string) bool {
	switch vr {
	case "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD",
		"OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI",
		"UL", "UN", "UR", "US", "UT", "UV":
		return true
	}
	return false
}

const undefinedLength = 0xffffffff

var errTruncated = errors.New("element runs past the end of its container")

// walker walks a DICOM byte stream element by element.
type walker struct {
	b        []byte
	bo       binary.ByteOrder
	implicit bool
	// encapsulated allows PixelData of undefined length (fragments).
	encapsulated bool
	// items collects the items of the top-level encapsulated PixelData:
	// the Basic Offset Table, then the fragments.
	items [][]byte
	// pixel is where the top-level PixelData element lies.
	pixel pixelElement
	// unknownSequences are the byte ranges of top-level elements of VR UN
	// and undefined length in an explicit VR dataset (see element).
	unknownSequences [][2]int
}

// pixelElement is where a file's top-level PixelData element lies: from
// start (its tag) to end, with native (uncompressed) pixels the value.
type pixelElement struct {
	found      bool
	start, end int
	native     []byte
}

// fileScan is what checkStructure learns about a Part-10 file.
type fileScan struct {
	// ts is the TransferSyntaxUID of the file meta information.
	ts string
	// metaEnd is where the dataset starts, after the file meta information.
	metaEnd int
	// items are the items of the top-level PixelData when it is
	// encapsulated: [0] the Basic Offset Table, then the fragments, each a
	// slice of the file's bytes; nil for native pixel data.
	items [][]byte
	// pixel is where the top-level PixelData element lies, and its value
	// when native: a slice of the file's bytes, not a copy.
	pixel pixelElement
	// unknownSequences are the byte ranges of the top-level elements of VR
	// UN and undefined length in an explicit VR dataset: sequences whose
	// contents are implicit VR (PS3.5 6.2.2), which suyashkumar/dicom v1.1.0
	// reads as explicit and fails on. parseDataset leaves them out; none is
	// an attribute segbridge reads (they are private, or their VR would be
	// known).
	unknownSequences [][2]int
}

// checkStructure validates the Part-10 framing and element lengths of data and
// returns the transfer syntax UID from its file meta information, with the
// fragments of encapsulated pixel data. A deflated dataset cannot be walked
// as it is: for one, only the meta information is checked, and the caller
// inflates the rest (inflatePart10) and checks that.
func checkStructure(data []byte) (fileScan, error) {
	if len(data) < 132 || string(data[128:132]) != "DICM" {
		return fileScan{}, errors.New("not a DICOM Part-10 file (no DICM prefix at byte 128)")
	}
	pos := 132
	// (0002,0000) UL, explicit little endian: tag(4) VR(2) VL(2) value(4).
	if len(data) < pos+12 || binary.LittleEndian.Uint16(data[pos:]) != 0x0002 ||
		binary.LittleEndian.Uint16(data[pos+2:]) != 0x0000 || string(data[pos+4:pos+6]) != "UL" ||
		binary.LittleEndian.Uint16(data[pos+6:]) != 4 {
		return fileScan{}, errors.New("file meta information does not start with its group length (0002,0000)")
	}
	metaLen := int64(binary.LittleEndian.Uint32(data[pos+8:]))
	pos += 12
	if metaLen > int64(len(data)-pos) {
		return fileScan{}, fmt.Errorf("file meta information group length %d runs past the end of the file", metaLen)
	}
	metaEnd := pos + int(metaLen)
	meta := walker{b: data, bo: binary.LittleEndian}
	var ts string
	for pos < metaEnd {
		next, t, err := meta.element(pos, metaEnd, 0)
		if err != nil {
			return fileScan{}, fmt.Errorf("file meta information: %w", err)
		}
		if t == tag.TransferSyntaxUID {
			vr := string(data[pos+4 : pos+6])
			if vr != "UI" {
				return fileScan{}, fmt.Errorf("file meta information: TransferSyntaxUID has VR %q, want UI", vr)
			}
			ts = strings.TrimRight(string(data[pos+8:next]), " \x00")
		}
		pos = next
	}
	if ts == "" {
		return fileScan{}, errors.New("file meta information has no TransferSyntaxUID")
	}
	scan := fileScan{ts: ts, metaEnd: metaEnd}
	bo, implicit, err := nativeTransferSyntax(ts)
	if err != nil {
		return scan, err
	}
	if ts == tsDeflatedLE {
		return scan, nil
	}
	w := walker{b: data, bo: bo, implicit: implicit, encapsulated: isEncapsulated(ts)}
	for pos < len(data) {
		next, _, err := w.element(pos, len(data), 0)
		if err != nil {
			return scan, fmt.Errorf("dataset at byte %d: %w", pos, err)
		}
		pos = next
	}
	scan.items, scan.pixel, scan.unknownSequences = w.items, w.pixel, w.unknownSequences
	return scan, nil
}

// element checks the element that starts at pos and must end by end, and
// returns the position after it and its tag.
func (w *walker) element(pos, end, depth int) (int, tag.Tag, error) {
	start := pos
	if depth > maxNesting {
		return 0, tag.Tag{}, fmt.Errorf("sequences nested deeper than %d levels", maxNesting)
	}
	if end-pos < 8 {
		return 0, tag.Tag{}, errTruncated
	}
	t := tag.Tag{Group: w.bo.Uint16(w.b[pos:]), Element: w.bo.Uint16(w.b[pos+2:])}
	pos += 4
	implicit := w.implicit || t == tag.Item // items are always implicit (PS3.5 7.5)
	var vr string
	var vl uint32
	if implicit {
		vr = tag.UnknownVR
		if info, err := tag.Find(t); err == nil {
			vr = info.VRs[0]
			if t == tag.PixelData || t == tag.OverlayData {
				vr = "OW"
			}
		}
		vl = w.bo.Uint32(w.b[pos:])
		pos += 4
	} else {
		vr = string(w.b[pos : pos+2])
		pos += 2
		isDelimiter := t == tag.ItemDelimitationItem || t == tag.SequenceDelimitationItem
		if !isKnownVR(vr) && !(isDelimiter && vr == "\x00\x00") {
			return 0, t, fmt.Errorf("element %v has invalid VR %q", t, vr)
		}
		if isLongVL(vr) {
			if end-pos < 6 {
				return 0, t, errTruncated
			}
			vl = w.bo.Uint32(w.b[pos+2:])
			pos += 6
			if vl == undefinedLength && (vr == "UC" || vr == "UR" || vr == "UT") {
				return 0, t, fmt.Errorf("element %v: VR %s may not have undefined length", t, vr)
			}
		} else {
			vl = uint32(w.bo.Uint16(w.b[pos:]))
			pos += 2
			if vl == 0xffff {
				vl = undefinedLength
			}
		}
	}

	if !implicit && vr == "UN" && vl == undefinedLength {
		// A sequence written as UN by a system that did not know its VR
		// (typically a private sequence converted from implicit VR): its
		// items are implicit VR little endian (PS3.5 6.2.2), whatever the
		// dataset around it is. Real files carry these (pydicom's
		// UN_sequence.dcm, a CT with GE UIDs).
		if depth > 0 {
			return 0, t, fmt.Errorf("element %v: a sequence of VR UN and undefined length inside another sequence is not supported", t)
		}
		w.implicit = true
		next, err := w.sequence(pos, end, vl, depth+1)
		w.implicit = false
		if err != nil {
			return 0, t, fmt.Errorf("element %v (VR UN, undefined length, read as an implicit VR sequence): %w", t, err)
		}
		w.unknownSequences = append(w.unknownSequences, [2]int{start, next})
		return next, t, nil
	}

	switch kind := tag.GetVRKind(t, vr); {
	case kind == tag.VRItem:
		next, err := w.item(pos, end, vl, depth+1)
		return next, t, err
	case kind == tag.VRSequence || (kind == tag.VRUnknown && vl == undefinedLength):
		next, err := w.sequence(pos, end, vl, depth+1)
		return next, t, err
	case vl == undefinedLength && t == tag.PixelData:
		if !w.encapsulated {
			return 0, t, errEncapsulated
		}
		next, err := w.fragments(pos, end, depth)
		if err == nil && depth == 0 && !w.pixel.found {
			w.pixel = pixelElement{found: true, start: start, end: next}
		}
		return next, t, err
	case vl == undefinedLength:
		return 0, t, fmt.Errorf("element %v (VR %s) has undefined length", t, vr)
	case int64(vl) > int64(end-pos):
		return 0, t, fmt.Errorf("element %v: value length %d runs past the end of its container (%d bytes left)", t, vl, end-pos)
	case t == tag.PixelData && depth == 0 && !w.pixel.found:
		w.pixel = pixelElement{found: true, start: start, end: pos + int(vl), native: w.b[pos : pos+int(vl) : pos+int(vl)]}
	}
	return pos + int(vl), t, nil
}

// errEncapsulated marks encapsulated (compressed) pixel data in a transfer
// syntax that should hold native pixels.
var errEncapsulated = errors.New("pixel data is encapsulated although the transfer syntax is uncompressed")

func (w *walker) sequence(pos, end int, vl uint32, depth int) (int, error) {
	if vl == undefinedLength {
		for {
			next, t, err := w.element(pos, end, depth)
			if err != nil {
				return 0, err
			}
			pos = next
			if t == tag.SequenceDelimitationItem {
				return pos, nil
			}
			if t != tag.Item {
				return 0, fmt.Errorf("sequence holds %v where an item belongs", t)
			}
		}
	}
	if int64(vl) > int64(end-pos) {
		return 0, fmt.Errorf("sequence length %d runs past the end of its container", vl)
	}
	end = pos + int(vl)
	for pos < end {
		next, t, err := w.element(pos, end, depth)
		if err != nil {
			return 0, err
		}
		if t != tag.Item {
			return 0, fmt.Errorf("sequence holds %v where an item belongs", t)
		}
		pos = next
	}
	return pos, nil
}

func (w *walker) item(pos, end int, vl uint32, depth int) (int, error) {
	if vl == undefinedLength {
		for {
			next, t, err := w.element(pos, end, depth)
			if err != nil {
				return 0, err
			}
			pos = next
			if t == tag.ItemDelimitationItem {
				return pos, nil
			}
		}
	}
	if int64(vl) > int64(end-pos) {
		return 0, fmt.Errorf("item length %d runs past the end of its container", vl)
	}
	end = pos + int(vl)
	for pos < end {
		next, _, err := w.element(pos, end, depth)
		if err != nil {
			return 0, err
		}
		pos = next
	}
	return pos, nil
}

// fragments checks the items of encapsulated pixel data (PS3.5 A.4) that
// start at pos: defined-length items, the first being the Basic Offset
// Table, ended by a sequence delimiter. At the top level (depth 0) it
// records them in w.items. Each item takes at least 8 bytes of the file, so
// their number is bounded by its size.
func (w *walker) fragments(pos, end, depth int) (int, error) {
	for n := 0; ; n++ {
		if end-pos < 8 {
			return 0, errors.New("encapsulated pixel data runs past the end of the file")
		}
		t := tag.Tag{Group: w.bo.Uint16(w.b[pos:]), Element: w.bo.Uint16(w.b[pos+2:])}
		vl := w.bo.Uint32(w.b[pos+4:])
		pos += 8
		switch {
		case t == tag.SequenceDelimitationItem && n == 0:
			return 0, errors.New("encapsulated pixel data has no Basic Offset Table item")
		case t == tag.SequenceDelimitationItem && vl != 0:
			// suyashkumar/dicom would go on reading after the 8 bytes
			// whatever the length says; refuse rather than disagree.
			return 0, fmt.Errorf("encapsulated pixel data: its sequence delimiter has length %d, want 0", vl)
		case t == tag.SequenceDelimitationItem:
			return pos, nil
		case t != tag.Item:
			return 0, fmt.Errorf("encapsulated pixel data holds %v where a fragment item belongs", t)
		case vl == undefinedLength:
			return 0, fmt.Errorf("encapsulated pixel data: item %d has undefined length", n)
		case int64(vl) > int64(end-pos):
			return 0, fmt.Errorf("encapsulated pixel data: item %d of %d bytes runs past the end of the file (%d bytes left)", n, vl, end-pos)
		}
		if depth == 0 {
			w.items = append(w.items, w.b[pos:pos+int(vl):pos+int(vl)])
		}
		pos += int(vl)
	}
}
