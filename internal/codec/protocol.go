package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The parent and a child talk over the child's stdin and a copy of its
// stdout with length-prefixed messages: a little-endian uint32 length, then
// that many bytes. The parent sends a config message, the child answers
// hello (for each library, in the order of the codecs table: whether it
// loaded, and its version or why not), then each request gets exactly one
// response. The request's op says which library decodes it, so that one
// child serves JPEG 2000 and JPEG-LS alike and every limit applies to both.
//
//	config:   magic "SBC2", memory limit (u64), CPU seconds per frame (u32),
//	          faults allowed (u8), then per library: path length (u16), path
//	hello:    status (u8), then per library: loaded (u8), text length (u16),
//	          its version or the reason it is missing
//	request:  op (u8), rows (u32), cols (u32), bits allocated, bits stored,
//	          high bit, signed (u8 each), codestream
//	response: status (u8), decoded pixels or a message

const configMagic = "SBC2"

// Request ops: one per library that decodes frames. The fault ops exist for
// the pool's tests and are refused by children whose pool did not enable
// them.
const (
	opDecodeJ2K  byte = 1 // JPEG 2000 and HTJ2K, by OpenJPEG
	opDecodeJLS  byte = 2 // JPEG-LS, by CharLS
	opFaultCrash byte = 0xf0
	opFaultHang  byte = 0xf1
	opFaultSpin  byte = 0xf2
	opFaultAlloc byte = 0xf3
)

// isDecode reports whether op asks for a frame to be decoded.
func isDecode(op byte) bool { return op == opDecodeJ2K || op == opDecodeJLS }

// Response and hello statuses.
const (
	statusOK     byte = 0
	statusFailed byte = 1 // the frame could not be decoded; the body says why
)

// Limits on message sizes, so that neither side trusts a length it reads.
const (
	maxMessage  = 1 << 20 // a message that is not pixels: config, hello, an error
	maxRequest  = 1 << 31 // a request: 2 GiB of codestream is far beyond any frame
	requestHead = 1 + 4 + 4 + 4
)

// childConfig is what a child needs to know before its first request.
type childConfig struct {
	memoryLimit int64 // bytes of address space beyond the child's size at start
	cpuSeconds  int   // CPU time one request may use
	faults      bool  // accept the fault ops
	libraries   [numLibraries]string
}

func (c childConfig) marshal() []byte {
	b := []byte(configMagic)
	b = binary.LittleEndian.AppendUint64(b, uint64(c.memoryLimit))
	b = binary.LittleEndian.AppendUint32(b, uint32(c.cpuSeconds))
	f := byte(0)
	if c.faults {
		f = 1
	}
	b = append(b, f)
	for _, l := range c.libraries {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(l)))
		b = append(b, l...)
	}
	return b
}

func unmarshalConfig(b []byte) (childConfig, error) {
	if len(b) < 17 || string(b[:4]) != configMagic {
		return childConfig{}, errors.New("not a decoder configuration")
	}
	c := childConfig{
		memoryLimit: int64(binary.LittleEndian.Uint64(b[4:])),
		cpuSeconds:  int(binary.LittleEndian.Uint32(b[12:])),
		faults:      b[16] == 1,
	}
	b = b[17:]
	for i := range c.libraries {
		if len(b) < 2 || int(binary.LittleEndian.Uint16(b)) > len(b)-2 {
			return childConfig{}, errors.New("decoder configuration ends early")
		}
		n := int(binary.LittleEndian.Uint16(b))
		c.libraries[i], b = string(b[2:2+n]), b[2+n:]
	}
	if len(b) != 0 {
		return childConfig{}, errors.New("decoder configuration has trailing bytes")
	}
	return c, nil
}

// libraryState is what a child's hello says of one library.
type libraryState struct {
	loaded bool
	text   string // the version when loaded, else why not
}

func marshalHello(libs [numLibraries]libraryState) []byte {
	b := []byte{statusOK}
	for _, l := range libs {
		loaded := byte(0)
		if l.loaded {
			loaded = 1
		}
		text := l.text
		if len(text) > 4096 {
			text = text[:4096]
		}
		b = append(b, loaded)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(text)))
		b = append(b, text...)
	}
	return b
}

func unmarshalHello(b []byte) ([numLibraries]libraryState, error) {
	var libs [numLibraries]libraryState
	if len(b) == 0 || b[0] != statusOK {
		return libs, errors.New("not a decoder hello")
	}
	b = b[1:]
	for i := range libs {
		if len(b) < 3 || int(binary.LittleEndian.Uint16(b[1:])) > len(b)-3 {
			return libs, errors.New("decoder hello ends early")
		}
		n := int(binary.LittleEndian.Uint16(b[1:]))
		libs[i] = libraryState{loaded: b[0] == 1, text: string(b[3 : 3+n])}
		b = b[3+n:]
	}
	if len(b) != 0 {
		return libs, errors.New("decoder hello has trailing bytes")
	}
	return libs, nil
}

// request is one frame to decode.
type request struct {
	op            byte
	rows, cols    int
	bitsAllocated int
	bitsStored    int
	highBit       int
	signed        bool
	data          []byte
}

// size is the number of bytes of the decoded frame.
func (r *request) size() int { return r.rows * r.cols * r.bitsAllocated / 8 }

// writeRequest sends r as one message.
func writeRequest(w io.Writer, r *request) error {
	head := make([]byte, 4, 4+requestHead)
	binary.LittleEndian.PutUint32(head, uint32(requestHead+len(r.data)))
	head = append(head, r.op)
	head = binary.LittleEndian.AppendUint32(head, uint32(r.rows))
	head = binary.LittleEndian.AppendUint32(head, uint32(r.cols))
	signed := byte(0)
	if r.signed {
		signed = 1
	}
	head = append(head, byte(r.bitsAllocated), byte(r.bitsStored), byte(r.highBit), signed)
	if _, err := w.Write(head); err != nil {
		return err
	}
	_, err := w.Write(r.data)
	return err
}

// readRequest reads one request; it checks the layout, so that the child
// never sizes a buffer from unchecked numbers.
func readRequest(r io.Reader) (*request, error) {
	n, err := readLength(r, maxRequest)
	if err != nil {
		return nil, err
	}
	if n < requestHead {
		return nil, fmt.Errorf("request of %d bytes is shorter than its header", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	req := &request{
		op:            b[0],
		rows:          int(binary.LittleEndian.Uint32(b[1:])),
		cols:          int(binary.LittleEndian.Uint32(b[5:])),
		bitsAllocated: int(b[9]),
		bitsStored:    int(b[10]),
		highBit:       int(b[11]),
		signed:        b[12] == 1,
		data:          b[requestHead:],
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	return req, nil
}

// check validates the layout of a decode request.
func (r *request) check() error {
	switch {
	case !isDecode(r.op):
		return nil
	case r.rows < 1 || r.rows > 65535 || r.cols < 1 || r.cols > 65535:
		return fmt.Errorf("image size %dx%d is out of range", r.cols, r.rows)
	case r.bitsAllocated != 8 && r.bitsAllocated != 16 && r.bitsAllocated != 32:
		return fmt.Errorf("BitsAllocated %d is not 8, 16 or 32", r.bitsAllocated)
	case r.bitsStored < 1 || r.bitsStored > r.bitsAllocated || r.highBit < r.bitsStored-1 || r.highBit >= r.bitsAllocated:
		return fmt.Errorf("BitsStored %d / HighBit %d do not fit BitsAllocated %d", r.bitsStored, r.highBit, r.bitsAllocated)
	}
	return nil
}

// writeMessage sends status and body as one message.
func writeMessage(w io.Writer, status byte, body []byte) error {
	head := binary.LittleEndian.AppendUint32(nil, uint32(1+len(body)))
	head = append(head, status)
	if _, err := w.Write(head); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// writeBlob sends body as one message.
func writeBlob(w io.Writer, body []byte) error {
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(body)))); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// readLength reads a message's length and refuses one over max.
func readLength(r io.Reader, max int64) (int64, error) {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	n := int64(binary.LittleEndian.Uint32(b[:]))
	if n > max {
		return 0, fmt.Errorf("message of %d bytes is over the limit of %d", n, max)
	}
	return n, nil
}

// readSmall reads one message of at most maxMessage bytes.
func readSmall(r io.Reader) ([]byte, error) {
	n, err := readLength(r, maxMessage)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return b, err
}
