// Package codec decodes JPEG 2000 and HTJ2K frames with OpenJPEG in child
// processes of segbridge's own binary, so that no codestream, however
// malformed, can crash, hang or exhaust the process that asked: a Pool of
// persistent children, each limited in memory and CPU time, answers
// volume.FrameDecoder's requests over pipes.
//
// Why a child process and not OpenJPEG called in process: a C decoder fed
// bytes from any modality on the network can dereference a bad pointer,
// loop, or allocate what the codestream claims, and in process any of those
// ends the bridge, the embedded queue and every worker with it; Go's recover
// catches none of them. A child that dies takes only its frame with it. Why
// not a WebAssembly build of OpenJPEG, which would isolate it in process: it
// would bring a runtime and a compiled decoder of its own into the
// repository instead of Debian's maintained, security-patched library.
package codec

import (
	"errors"

	"github.com/segbridge/segbridge/internal/volume"
)

// ErrNoOpenJPEG is wrapped by the error of a frame that could not be decoded
// because the OpenJPEG library could not be loaded.
var ErrNoOpenJPEG = errors.New("OpenJPEG is not installed")

// ErrClosed is returned by a Pool that was closed.
var ErrClosed = errors.New("JPEG 2000 decoder pool is closed")

// DecodeError says why a frame could not be decoded: the codestream is
// corrupt or does not match its DICOM header, the decoder crashed, hung or
// ran out of memory or CPU time on it, or OpenJPEG is not installed. It
// wraps volume.ErrInvalidSeries, since decoding the same bytes again would
// fail the same way, and its message is written for a person.
type DecodeError struct {
	Reason string
	// Err is a sentinel the caller may test for (ErrNoOpenJPEG), or nil.
	Err error
}

func (e *DecodeError) Error() string { return e.Reason }

func (e *DecodeError) Unwrap() []error {
	if e.Err != nil {
		return []error{volume.ErrInvalidSeries, e.Err}
	}
	return []error{volume.ErrInvalidSeries}
}
