package volume

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// inflatePart10 turns a Deflated Explicit VR Little Endian file (PS3.5 A.5:
// the dataset after the file meta information is one raw deflate stream)
// into the same file in Explicit VR Little Endian: the meta information with
// its TransferSyntaxUID replaced, then the inflated dataset. The inflated
// dataset may hold at most maxBytes bytes: a few kilobytes of deflate can
// claim gigabytes, so the limit is enforced while inflating, never after.
func inflatePart10(data []byte, scan fileScan, maxBytes int64) ([]byte, error) {
	meta, err := rewriteMeta(data[:scan.metaEnd], tsExplicitLE)
	if err != nil {
		return nil, err
	}
	body := data[scan.metaEnd:]
	out, err := inflate(flate.NewReader(bytes.NewReader(body)), meta, maxBytes)
	if err != nil && len(body) > 1 && body[0]&0x0f == 8 && (uint16(body[0])<<8|uint16(body[1]))%31 == 0 {
		// Some writers wrap the stream in a zlib header, against the
		// standard; such a stream is not valid raw deflate, so this second
		// reading cannot change how a valid file reads.
		if zr, zerr := zlib.NewReader(bytes.NewReader(body)); zerr == nil {
			if out2, err2 := inflate(zr, meta, maxBytes); err2 == nil {
				return out2, nil
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// inflate appends what r inflates to prefix, up to maxBytes of it.
func inflate(r io.ReadCloser, prefix []byte, maxBytes int64) ([]byte, error) {
	defer r.Close()
	buf := bytes.NewBuffer(prefix)
	n, err := io.Copy(buf, io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("deflated dataset: %w", err)
	}
	if n > maxBytes {
		return nil, fmt.Errorf("deflated dataset inflates to more than %d bytes, the limit for one instance", maxBytes)
	}
	return buf.Bytes(), nil
}

// rewriteMeta returns the preamble, prefix and file meta information of meta
// (data up to the end of the meta group, already checked by checkStructure)
// with TransferSyntaxUID set to ts and the group length recomputed.
func rewriteMeta(meta []byte, ts string) ([]byte, error) {
	val := []byte(ts)
	if len(val)%2 == 1 {
		val = append(val, 0)
	}
	out := make([]byte, 0, len(meta)+len(val))
	out = append(out, meta[:132]...)
	out = append(out, meta[132:144]...) // group length, fixed below
	found := false
	for pos := 144; pos < len(meta); {
		w := walker{b: meta, bo: binary.LittleEndian}
		next, t, err := w.element(pos, len(meta), 0)
		if err != nil {
			return nil, fmt.Errorf("file meta information: %w", err)
		}
		if t == tag.TransferSyntaxUID {
			found = true
			out = append(out, meta[pos:pos+6]...) // tag and VR "UI"
			out = binary.LittleEndian.AppendUint16(out, uint16(len(val)))
			out = append(out, val...)
		} else {
			out = append(out, meta[pos:next]...)
		}
		pos = next
	}
	if !found {
		return nil, errors.New("file meta information has no TransferSyntaxUID")
	}
	binary.LittleEndian.PutUint32(out[140:], uint32(len(out)-144))
	return out, nil
}
