package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/suyashkumar/dicom"
)

// FrameDecoder decodes the compressed frames this package does not decode
// itself: JPEG 2000, HTJ2K and JPEG-LS. In segbridge it is codec.Pool,
// which runs OpenJPEG and CharLS in child processes so that no codestream
// can crash, hang or exhaust the process that parses.
//
// DecodeFrame writes the frame's pixels into dst (exactly f.Size() bytes) in
// the layout of native little-endian pixel data described by f, or returns
// an error. An error that wraps ErrInvalidSeries is the frame's own fault, or
// a lack that retrying cannot mend (the decoder library is not installed),
// and fails the series; any other error (the context ended, the decoder was
// closed or could not start) is passed up as it is, for the caller to retry.
type FrameDecoder interface {
	DecodeFrame(ctx context.Context, f *Frame, dst []byte) error
}

// Frame is one compressed frame handed to a FrameDecoder, with the pixel
// layout the DICOM header declares. Following PS3.5 8.2.4, the header wins
// over what the codestream says of precision and signedness: a decoder
// keeps the low BitsStored bits of each decoded value (two's complement for
// negative ones), shifted to HighBit, in a BitsAllocated-bit little-endian
// sample, so that the usual pixel pipeline (sign extension from BitsStored,
// rescale) reads them as the header says.
type Frame struct {
	// SOPInstanceUID and Number (1-based; 0 for a single-frame instance)
	// name the frame in messages.
	SOPInstanceUID string
	Number         int
	// TransferSyntax is the instance's TransferSyntaxUID.
	TransferSyntax string
	// Data is the frame's compressed bytes: its fragments joined.
	Data []byte

	Rows, Cols      int
	SamplesPerPixel int
	BitsAllocated   int // 8, 16 or 32
	BitsStored      int
	HighBit         int
	Signed          bool
}

// Size is the number of bytes the decoded frame takes.
func (f *Frame) Size() int {
	return f.Rows * f.Cols * f.SamplesPerPixel * (f.BitsAllocated / 8)
}

// Describe names the frame and its transfer syntax for messages.
func (f *Frame) Describe() string {
	s := "instance " + f.SOPInstanceUID
	if f.Number > 0 {
		s += fmt.Sprintf(" frame %d", f.Number)
	}
	return s + ", " + describeSyntax(f.TransferSyntax)
}

// Parser parses instances, decoding compressed pixel data. The zero Parser
// reads uncompressed, deflated, RLE and JPEG (baseline, extended, lossless)
// instances and refuses JPEG 2000, HTJ2K and JPEG-LS for want of a decoder.
type Parser struct {
	// Decoder decodes JPEG 2000, HTJ2K and JPEG-LS frames; nil refuses them.
	Decoder FrameDecoder
	// MaxBytes bounds what one instance may decode to: the inflated dataset
	// of a deflated file, or the pixel data decoded from compressed frames,
	// in bytes. It is checked against the DICOM header before anything is
	// decoded. 0 means DefaultMaxBytes.
	MaxBytes int64
	// Concurrency is how many frames of one multi-frame instance are handed
	// to Decoder at once. 0 means GOMAXPROCS.
	Concurrency int
	// Release, when set, is called with the bytes given to ParseInstance
	// once nothing parsed from them refers to them any more: at once when
	// the pixels were decoded into memory of their own (compressed or
	// deflated files) or the parse failed, else, since the instance and its
	// frames read their pixels from those bytes, once none of them can be
	// reached, from a goroutine of the Go runtime's. A caller that recycles
	// download buffers hands them back there.
	Release func(data []byte)
}

func (p Parser) maxBytes() int64 {
	if p.MaxBytes > 0 {
		return p.MaxBytes
	}
	return DefaultMaxBytes
}

// passUp marks an error that is not the input's fault (a context that ended,
// a decoder that could not run): ParseInstance returns it without wrapping
// ErrInvalidSeries, so the caller may retry.
type passUp struct{ err error }

func (e *passUp) Error() string { return e.err.Error() }
func (e *passUp) Unwrap() error { return e.err }

// ParseInstance parses one DICOM Part-10 file, as the package function
// ParseInstance does, and decodes its pixel data if compressed: deflated,
// RLE Lossless and JPEG here, JPEG 2000 and HTJ2K through p.Decoder. Every error wraps
// ErrInvalidSeries except those the decoder returns as not the input's fault
// (see FrameDecoder) and ctx's.
//
// Uncompressed pixels are not copied: the instance reads them from data,
// which the caller must leave unchanged (see Release).
func (p Parser) ParseInstance(ctx context.Context, data []byte) (inst *Instance, err error) {
	file := data
	retained := false
	if p.Release != nil {
		defer func() {
			if !retained {
				p.Release(file)
			}
		}()
	}
	// suyashkumar/dicom panics on some malformed input (type assertions on
	// element values); a panic there is a bad file, not a bug of ours.
	defer func() {
		if r := recover(); r != nil {
			inst, err = nil, fmt.Errorf("%w: malformed DICOM file: parser failed: %v", ErrInvalidSeries, r)
		}
	}()
	ds, scan, data, err := readDataset(data, p.maxBytes())
	if err != nil {
		return nil, err
	}
	src := &pixelSource{ctx: ctx, p: p, scan: scan}
	inst, err = newInstance(&ds, scan.ts, src)
	if err != nil {
		var up *passUp
		switch {
		case errors.As(err, &up) && inst != nil && inst.SOPInstanceUID != "":
			return nil, fmt.Errorf("instance %s: %w", inst.SOPInstanceUID, up.err)
		case errors.As(err, &up):
			return nil, up.err
		case inst != nil && inst.SOPInstanceUID != "":
			return nil, fmt.Errorf("%w: instance %s: %w", ErrInvalidSeries, inst.SOPInstanceUID, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidSeries, err)
	}
	if p.Release != nil && scan.items == nil && len(data) > 0 && &data[0] == &file[0] {
		// The pixels are file's own bytes: hand them back only once no
		// instance or frame reads them. The holder, not the instance, has
		// the cleanup, so that a frame outliving its instance keeps it.
		h := &holder{}
		inst.hold(h)
		release, f := p.Release, file
		runtime.AddCleanup(h, func(struct{}) { release(f) }, struct{}{})
		retained = true
	}
	return inst, nil
}

// holder is held by an instance and its frames while any of them is
// reachable. It holds a pointer so that it is never one of the tiny
// pointer-free objects the runtime batches, whose cleanups may not run.
type holder struct{ _ *byte }

func (in *Instance) hold(h *holder) {
	in.holder = h
	for _, f := range in.Frames {
		f.holder = h
	}
}

// readDataset checks the structure of the Part-10 file data, inflates it
// when deflated (to at most maxBytes), and parses its elements before the
// pixels. It returns the dataset, the scan and the bytes the scan's slices
// refer to: data, or its inflated copy. Every error wraps ErrInvalidSeries.
// The caller recovers from the library's panics.
func readDataset(data []byte, maxBytes int64) (dicom.Dataset, fileScan, []byte, error) {
	scan, err := checkStructure(data)
	if err == nil && scan.ts == tsDeflatedLE {
		if data, err = inflatePart10(data, scan, maxBytes); err == nil {
			scan, err = checkStructure(data)
		}
	}
	if err != nil {
		if scan.ts != "" {
			if _, _, tsErr := nativeTransferSyntax(scan.ts); tsErr != nil {
				return dicom.Dataset{}, scan, data, fmt.Errorf("%w: %w", ErrInvalidSeries, tsErr)
			}
		}
		return dicom.Dataset{}, scan, data, fmt.Errorf("%w: malformed DICOM file: %w", ErrInvalidSeries, err)
	}
	ds, err := parseDataset(data, scan)
	if err != nil {
		return ds, scan, data, fmt.Errorf("%w: malformed DICOM file: %w", ErrInvalidSeries, err)
	}
	return ds, scan, data, nil
}

// parseDataset parses data with suyashkumar/dicom in the encoding of the
// file's transfer syntax. The library guesses big endian for a transfer
// syntax its table lacks (HTJ2K), so the encoding is set here. The library
// copies any pixel data it reads, and skips it by copying it away, so it
// is given only the elements before the top-level PixelData, never the
// pixels: they are in scan; nor the top-level sequences of VR UN it cannot
// read (fileScan.unknownSequences). The elements after the pixels are not parsed:
// the standard allows only Data Set Trailing Padding (FFFC,FFFC) and
// Digital Signatures (FFFA,FFFA) there, neither says anything about the
// image, checkStructure has already walked them, and the library cannot
// start a parse at them (it looks for file meta information, and fails).
// Real files end so: pydicom's MR_small, made by Clunie's tools from a
// scanner image, carries 126 bytes of trailing padding.
func parseDataset(data []byte, scan fileScan) (dicom.Dataset, error) {
	bo, implicit, err := nativeTransferSyntax(scan.ts)
	if err != nil {
		return dicom.Dataset{}, err
	}
	head := data
	if scan.pixel.found {
		head = data[:scan.pixel.start]
	}
	if len(scan.unknownSequences) > 0 {
		// A copy without them, for the library; only such rare files pay.
		cut := make([]byte, 0, len(head))
		from := 0
		for _, r := range scan.unknownSequences {
			if r[0] >= len(head) {
				break
			}
			cut = append(cut, head[from:r[0]]...)
			from = r[1]
		}
		head = append(cut, head[min(from, len(head)):]...)
	}
	opts := []dicom.ParseOption{dicom.SkipPixelData(), dicom.AllowUnknownSpecificCharacterSet()}
	p, err := dicom.NewParser(bytes.NewReader(head), int64(len(head)), nil, opts...)
	if err != nil {
		return dicom.Dataset{}, err
	}
	p.SetTransferSyntax(bo, implicit)
	ds := dicom.Dataset{Elements: p.GetMetadata().Elements}
	return ds, parseElements(p, &ds)
}

// parseElements appends the elements p reads to ds, until the end.
func parseElements(p *dicom.Parser, ds *dicom.Dataset) error {
	for {
		e, err := p.Next()
		if errors.Is(err, dicom.ErrorEndOfDICOM) || errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ds.Elements = append(ds.Elements, e)
	}
}

// pixelSource hands newInstance the bytes of an instance's pixel data:
// native ones as the file holds them, compressed ones decoded.
type pixelSource struct {
	ctx  context.Context
	p    Parser
	scan fileScan
}

// pixels returns the instance's native pixel data: frames frames of
// in.Rows x in.Cols samples in the format newInstance read into in.pix.
// Uncompressed pixels are the file's own bytes, not a copy.
func (s *pixelSource) pixels(in *Instance, frames int) ([]byte, error) {
	if s.scan.items == nil {
		if isEncapsulated(s.scan.ts) {
			return nil, fmt.Errorf("pixel data is not encapsulated although transfer syntax %s is", describeSyntax(s.scan.ts))
		}
		return s.scan.pixel.native, nil
	}
	bps := in.pix.bytesPerSample()
	plane := int64(in.Rows) * int64(in.Cols) * int64(bps)
	total := plane * int64(frames)
	if frames < 1 || total/int64(frames) != plane || total > s.p.maxBytes() {
		return nil, fmt.Errorf("%d frames of %dx%d pixels of %d bits would decode to %d bytes, over the limit of %d for one instance",
			frames, in.Cols, in.Rows, in.pix.bitsAllocated, total, s.p.maxBytes())
	}
	data, err := splitFrames(s.scan.items, frames, s.scan.ts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", describeSyntax(s.scan.ts), err)
	}
	out := make([]byte, total)
	if s.scan.ts == tsRLELossless {
		for f, d := range data {
			if err := decodeRLE(d, out[int64(f)*plane:int64(f+1)*plane], bps); err != nil {
				return nil, fmt.Errorf("%s%s: %w", describeSyntax(s.scan.ts), frameSuffix(f, frames), err)
			}
		}
		return out, nil
	}
	if isJPEG(s.scan.ts) {
		if err := jpegFrames(data, in.Rows, in.Cols, in.pix, out); err != nil {
			if frames == 1 {
				// A single frame needs no number.
				err = errors.Unwrap(err)
			}
			return nil, fmt.Errorf("%s: %w", describeSyntax(s.scan.ts), err)
		}
		return out, nil
	}
	if s.p.Decoder == nil {
		return nil, fmt.Errorf("pixel data in %s needs a frame decoder, and none was given "+
			"(segbridge runs one in child processes: see internal/codec)", describeSyntax(s.scan.ts))
	}
	return out, s.decodeFrames(in, data, out, int(plane))
}

// decodeFrames has the Parser's decoder decode each frame into its place in
// out, several at a time.
func (s *pixelSource) decodeFrames(in *Instance, data [][]byte, out []byte, plane int) error {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	workers := s.p.Concurrency
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(data))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
			cancel()
		}
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				if err := s.decodeFrame(ctx, in, f, len(data), data[f], out[f*plane:(f+1)*plane]); err != nil {
					fail(err)
				}
			}
		}()
	}
feed:
	for f := range data {
		select {
		case next <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	if err := s.ctx.Err(); err != nil {
		return &passUp{err}
	}
	return nil
}

// decodeFrame decodes frame f of frames with the Parser's decoder. A panic
// in the decoder, which runs in a goroutine of its own here, becomes an
// error rather than the end of the process.
func (s *pixelSource) decodeFrame(ctx context.Context, in *Instance, f, frames int, data, dst []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &passUp{fmt.Errorf("frame decoder panicked: %v", r)}
		}
	}()
	fr := &Frame{
		SOPInstanceUID:  in.SOPInstanceUID,
		TransferSyntax:  s.scan.ts,
		Data:            data,
		Rows:            in.Rows,
		Cols:            in.Cols,
		SamplesPerPixel: 1,
		BitsAllocated:   in.pix.bitsAllocated,
		BitsStored:      in.pix.bitsStored,
		HighBit:         in.pix.highBit,
		Signed:          in.pix.signed,
	}
	if frames > 1 {
		fr.Number = f + 1
	}
	err = s.p.Decoder.DecodeFrame(ctx, fr, dst)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalidSeries):
		return fmt.Errorf("%s%s: %w", describeSyntax(s.scan.ts), frameSuffix(f, frames), err)
	case ctx.Err() != nil && s.ctx.Err() == nil:
		// Cancelled because another frame failed: that error is the one.
		return &passUp{ctx.Err()}
	}
	return &passUp{fmt.Errorf("decode %s%s: %w", describeSyntax(s.scan.ts), frameSuffix(f, frames), err)}
}

func frameSuffix(f, frames int) string {
	if frames <= 1 {
		return ""
	}
	return fmt.Sprintf(" frame %d", f+1)
}
