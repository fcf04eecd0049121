// Package codec decodes JPEG 2000 and HTJ2K frames with OpenJPEG, and
// JPEG-LS frames with CharLS, in child processes of segbridge's own binary,
// so that no codestream, however malformed, can crash, hang or exhaust the
// process that asked: a Pool of persistent children, each limited in memory
// and CPU time, answers volume.FrameDecoder's requests over pipes.
//
// Why a child process and not the C decoders called in process: a C decoder
// fed bytes from any modality on the network can dereference a bad pointer,
// loop, or allocate what the codestream claims, and in process any of those
// ends the bridge, the embedded queue and every worker with it; Go's recover
// catches none of them. A child that dies takes only its frame with it. Why
// not WebAssembly builds of the decoders, which would isolate them in
// process: they would bring a runtime and compiled decoders of their own
// into the repository instead of Debian's maintained, security-patched
// libraries.
package codec

import (
	"errors"
	"strings"

	"github.com/segbridge/segbridge/internal/volume"
)

// ErrNoOpenJPEG is wrapped by the error of a frame that could not be decoded
// because the OpenJPEG library could not be loaded.
var ErrNoOpenJPEG = errors.New("OpenJPEG is not installed")

// ErrNoCharLS is wrapped by the error of a frame that could not be decoded
// because the CharLS library could not be loaded.
var ErrNoCharLS = errors.New("CharLS is not installed")

// ErrClosed is returned by a Pool that was closed.
var ErrClosed = errors.New("frame decoder pool is closed")

// DecodeError says why a frame could not be decoded: the codestream is
// corrupt or does not match its DICOM header, the decoder crashed, hung or
// ran out of memory or CPU time on it, or its library is not installed. It
// wraps volume.ErrInvalidSeries, since decoding the same bytes again would
// fail the same way, and its message is written for a person.
type DecodeError struct {
	Reason string
	// Err is a sentinel the caller may test for (ErrNoOpenJPEG,
	// ErrNoCharLS), or nil.
	Err error
}

func (e *DecodeError) Error() string { return e.Reason }

func (e *DecodeError) Unwrap() []error {
	if e.Err != nil {
		return []error{volume.ErrInvalidSeries, e.Err}
	}
	return []error{volume.ErrInvalidSeries}
}

// The libraries a child loads, as indexes into childConfig.libraries and
// the hello; each is loaded on its own, so a machine without one still
// decodes what the other does.
const (
	libOpenJPEG = iota
	libCharLS
	numLibraries
)

// codec is one compression family: which library decodes it, by which
// request op, and what to tell a person whose machine lacks the library.
type codec struct {
	name    string // "JPEG 2000", for messages
	op      byte
	library int    // libOpenJPEG, libCharLS
	libName string // "OpenJPEG"
	pkg     string // the Debian package that installs the library
	missing error  // the sentinel wrapped when the library is missing
}

var (
	codecJ2K = &codec{name: "JPEG 2000", op: opDecodeJ2K, library: libOpenJPEG, libName: "OpenJPEG",
		pkg: "libopenjp2-7", missing: ErrNoOpenJPEG}
	codecJLS = &codec{name: "JPEG-LS", op: opDecodeJLS, library: libCharLS, libName: "CharLS",
		pkg: "libcharls2", missing: ErrNoCharLS}
)

// codecFor returns the codec of transfer syntax ts, or nil if this package
// does not decode it. The lists are this package's own, not
// volume.TransferSyntaxDecoding's, since which syntaxes reach a
// FrameDecoder is the volume package's decision and this one's is only
// which library decodes each.
func codecFor(ts string) *codec {
	switch ts {
	case "1.2.840.10008.1.2.4.90", // JPEG 2000 Lossless Only
		"1.2.840.10008.1.2.4.91",  // JPEG 2000
		"1.2.840.10008.1.2.4.201", // HTJ2K Lossless Only
		"1.2.840.10008.1.2.4.202", // HTJ2K with RPCL Options Lossless Only
		"1.2.840.10008.1.2.4.203": // HTJ2K
		return codecJ2K
	case "1.2.840.10008.1.2.4.80", // JPEG-LS Lossless
		"1.2.840.10008.1.2.4.81": // JPEG-LS Near-Lossless
		return codecJLS
	}
	return nil
}

// isHTJ2K reports whether ts is one of the HTJ2K syntaxes.
func isHTJ2K(ts string) bool { return strings.HasPrefix(ts, "1.2.840.10008.1.2.4.20") }
