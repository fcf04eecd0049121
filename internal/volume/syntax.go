package volume

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/suyashkumar/dicom/pkg/uid"
)

// Transfer syntaxes are sniffed and sorted here, and only here: the parser
// asks TransferSyntaxDecoding how to read the pixels. Each syntax has exactly
// one decoder, chosen for safety first, and none of them is Orthanc:
//
//   - uncompressed syntaxes are read as they are;
//   - RLE Lossless, deflate and the JPEG processes of T.81 (baseline,
//     extended, lossless, lossless SV1; internal/jpeg) are decoded here, in
//     pure Go, in process (a malformed stream can only make Go code return
//     an error or panic, and ParseInstance recovers from panics); with
//     Debian's orthanc-gdcm plugin loaded, Orthanc 1.10.1 crashes within a
//     few dozen transcodes of JPEG, so it is never asked to;
//   - JPEG 2000, HTJ2K and JPEG-LS go to a FrameDecoder, in segbridge
//     OpenJPEG and CharLS run in child processes (internal/codec), because a
//     C decoder fed bytes from any modality on the network can crash, hang or
//     allocate without bound;
//   - nothing is ever sent to Orthanc for transcoding: with Debian's
//     orthanc-gdcm plugin loaded, Orthanc 1.10.1 dies on transcodes of lossy
//     JPEG 2000 and, in the plugin's default configuration, of every JPEG
//     syntax, so a syntax not on the list above fails the series, naming the
//     syntax.

// Transfer syntax UIDs this package names.
const (
	tsImplicitLE        = "1.2.840.10008.1.2"
	tsExplicitLE        = "1.2.840.10008.1.2.1"
	tsDeflatedLE        = "1.2.840.10008.1.2.1.99"
	tsExplicitBE        = "1.2.840.10008.1.2.2"
	tsJPEGBaseline      = "1.2.840.10008.1.2.4.50"
	tsJPEGExtended      = "1.2.840.10008.1.2.4.51"
	tsJPEGLossless      = "1.2.840.10008.1.2.4.57"
	tsJPEGLosslessSV1   = "1.2.840.10008.1.2.4.70"
	tsJPEGLSLossless    = "1.2.840.10008.1.2.4.80"
	tsJPEGLSNear        = "1.2.840.10008.1.2.4.81"
	tsJ2KLossless       = "1.2.840.10008.1.2.4.90"
	tsJ2K               = "1.2.840.10008.1.2.4.91"
	tsHTJ2KLossless     = "1.2.840.10008.1.2.4.201"
	tsHTJ2KLosslessRPCL = "1.2.840.10008.1.2.4.202"
	tsHTJ2K             = "1.2.840.10008.1.2.4.203"
	tsRLELossless       = "1.2.840.10008.1.2.5"
)

// Decoding says who decodes the pixel data of a transfer syntax.
type Decoding int

const (
	// DecodeNone: nobody here decodes it; a series stored so fails,
	// naming the syntax.
	DecodeNone Decoding = iota
	// DecodeNative: uncompressed pixels, read as they are.
	DecodeNative
	// DecodeInProcess: RLE Lossless, Deflated Explicit VR Little Endian and
	// JPEG baseline, extended, lossless and lossless SV1, decoded by this
	// package (JPEG with internal/jpeg) in pure Go.
	DecodeInProcess
	// DecodeFrames: JPEG 2000, HTJ2K and JPEG-LS, decoded frame by frame by
	// the Parser's FrameDecoder.
	DecodeFrames
)

// TransferSyntaxDecoding returns who decodes the pixel data of transfer
// syntax ts.
func TransferSyntaxDecoding(ts string) Decoding {
	switch ts {
	case tsImplicitLE, tsExplicitLE, tsExplicitBE:
		return DecodeNative
	case tsDeflatedLE, tsRLELossless, tsJPEGBaseline, tsJPEGExtended, tsJPEGLossless, tsJPEGLosslessSV1:
		return DecodeInProcess
	case tsJ2KLossless, tsJ2K, tsHTJ2KLossless, tsHTJ2KLosslessRPCL, tsHTJ2K, tsJPEGLSLossless, tsJPEGLSNear:
		return DecodeFrames
	}
	return DecodeNone
}

// TransferSyntaxName returns the name of transfer syntax ts, or "unknown
// transfer syntax".
func TransferSyntaxName(ts string) string {
	// suyashkumar/dicom v1.1.0's table predates HTJ2K (2023).
	switch ts {
	case tsHTJ2KLossless:
		return "High-Throughput JPEG 2000 Image Compression (Lossless Only)"
	case tsHTJ2KLosslessRPCL:
		return "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)"
	case tsHTJ2K:
		return "High-Throughput JPEG 2000 Image Compression"
	}
	if info, err := uid.Lookup(ts); err == nil && info.Type == uid.TypeTransferSyntax {
		return info.Name
	}
	return "unknown transfer syntax"
}

// describeSyntax names ts for messages: "JPEG 2000 Image Compression
// (1.2.840.10008.1.2.4.91)".
func describeSyntax(ts string) string {
	return fmt.Sprintf("%s (%s)", TransferSyntaxName(ts), ts)
}

// isJPEG reports whether ts holds JPEG (T.81) codestreams that
// internal/jpeg decodes.
func isJPEG(ts string) bool {
	switch ts {
	case tsJPEGBaseline, tsJPEGExtended, tsJPEGLossless, tsJPEGLosslessSV1:
		return true
	}
	return false
}

// isJ2K reports whether ts holds JPEG 2000 codestreams (HTJ2K included).
func isJ2K(ts string) bool {
	switch ts {
	case tsJ2KLossless, tsJ2K, tsHTJ2KLossless, tsHTJ2KLosslessRPCL, tsHTJ2K:
		return true
	}
	return false
}

// isJPEGLS reports whether ts holds JPEG-LS (T.87) codestreams.
func isJPEGLS(ts string) bool {
	return ts == tsJPEGLSLossless || ts == tsJPEGLSNear
}

// isEncapsulated reports whether ts stores its pixel data encapsulated
// (PS3.5 A.4): every compressed syntax but deflate, which compresses the
// whole dataset instead.
func isEncapsulated(ts string) bool {
	return ts == tsRLELossless || isJPEG(ts) || TransferSyntaxDecoding(ts) == DecodeFrames
}

// FileTransferSyntax reads TransferSyntaxUID from the file meta information
// of a Part-10 file (always Explicit VR Little Endian); ok is false when data
// does not start like a well-formed Part-10 file.
func FileTransferSyntax(data []byte) (ts string, ok bool) {
	if len(data) < 132 || string(data[128:132]) != "DICM" {
		return "", false
	}
	for pos := 132; pos+8 <= len(data); {
		group := binary.LittleEndian.Uint16(data[pos:])
		elem := binary.LittleEndian.Uint16(data[pos+2:])
		if group != 0x0002 {
			return "", false
		}
		var n, hdr int
		if isLongVL(string(data[pos+4 : pos+6])) {
			if pos+12 > len(data) {
				return "", false
			}
			n, hdr = int(binary.LittleEndian.Uint32(data[pos+8:])), 12
		} else {
			n, hdr = int(binary.LittleEndian.Uint16(data[pos+6:])), 8
		}
		if n < 0 || n > len(data)-pos-hdr {
			return "", false
		}
		if elem == 0x0010 {
			ts = strings.TrimRight(string(data[pos+hdr:pos+hdr+n]), " \x00")
			return ts, ts != ""
		}
		pos += hdr + n
	}
	return "", false
}

// nativeTransferSyntax returns how the dataset of a transfer syntax this
// package reads is encoded: byte order and implicit VR. Every compressed
// syntax encodes its dataset as Explicit VR Little Endian (PS3.5 A.4), and
// the pixels this package decodes from it are little endian too. For a
// syntax nobody here decodes it returns a message naming the syntax and what
// to do.
func nativeTransferSyntax(ts string) (binary.ByteOrder, bool, error) {
	switch TransferSyntaxDecoding(ts) {
	case DecodeNative:
		switch ts {
		case tsImplicitLE:
			return binary.LittleEndian, true, nil
		case tsExplicitBE:
			return binary.BigEndian, false, nil
		}
		return binary.LittleEndian, false, nil
	case DecodeInProcess, DecodeFrames:
		return binary.LittleEndian, false, nil
	}
	return nil, false, fmt.Errorf("series is stored with transfer syntax %s (%s), which segbridge cannot decode: "+
		"it reads uncompressed, deflated, RLE, JPEG baseline, extended and lossless, JPEG-LS, JPEG 2000 and HTJ2K "+
		"pixel data; send the series in one of those",
		ts, TransferSyntaxName(ts))
}
