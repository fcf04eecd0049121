package orthanc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/suyashkumar/dicom/pkg/uid"

	"github.com/segbridge/segbridge/internal/volume"
)

// Why transcoding is done this way: Orthanc 1.10.1 (Debian 12) ignores both
// the transfer-syntax parameter of an Accept header and a ?transcode= argument
// on GET /instances/{id}/file and always answers the stored bytes. What it does
// support is POST /instances/{id}/modify with "Transcode", which answers the
// modified file without storing it; with "Keep": ["SOPInstanceUID"] and
// "Force": true nothing but the encoding changes. Its DCMTK build decodes JPEG
// baseline/extended/lossless, JPEG-LS, RLE and deflated data, but not JPEG 2000
// (that needs a codec plugin such as GDCM). A file is asked for twice only when
// it is stored compressed: the stored bytes are fetched first and their file
// meta information says whether they need it.

// ExplicitVRLittleEndian is the transfer syntax compressed instances are
// transcoded to.
const ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"

// ErrCannotTranscode is wrapped by the error of an instance that Orthanc cannot
// decode to uncompressed pixels.
var ErrCannotTranscode = errors.New("orthanc cannot transcode the instance")

// TranscodeError says that Orthanc could not transcode an instance. It wraps
// ErrCannotTranscode and volume.ErrInvalidSeries, so a worker treats it as a
// permanent property of the series (asking again gives the same answer), and
// its message says how to fix it.
type TranscodeError struct {
	InstanceID     string
	TransferSyntax string
	Err            error
}

func (e *TranscodeError) Error() string {
	return fmt.Sprintf("instance %s is stored as %s (%s) and Orthanc cannot transcode it to Explicit VR Little Endian (%v): "+
		"install an Orthanc plugin that decodes it (for JPEG 2000 the GDCM plugin, Debian package orthanc-gdcm) "+
		"or send the series uncompressed", e.InstanceID, transferSyntaxName(e.TransferSyntax), e.TransferSyntax, e.Err)
}

func (e *TranscodeError) Unwrap() []error {
	return []error{ErrCannotTranscode, volume.ErrInvalidSeries, e.Err}
}

// instanceFiler downloads an instance's stored file.
type instanceFiler interface {
	InstanceFile(ctx context.Context, id string) ([]byte, error)
}

// instanceTranscoder asks for an instance's file in another transfer syntax.
type instanceTranscoder interface {
	TranscodeInstance(ctx context.Context, id, transferSyntax string) ([]byte, error)
}

var _ instanceTranscoder = (*Client)(nil)

// UncompressedInstanceFile downloads instance id and, when it is stored in a
// transfer syntax other than Implicit or Explicit VR Little Endian or Explicit
// VR Big Endian, asks Orthanc for it transcoded to Explicit VR Little Endian.
// p is usually a *Client; a p that cannot transcode (a test double) gets the
// stored bytes back, which the DICOM parser then refuses with its own reason.
// Bytes that are not a Part-10 file are returned as they are, for the parser
// to refuse.
func UncompressedInstanceFile(ctx context.Context, p instanceFiler, id string) ([]byte, error) {
	data, err := p.InstanceFile(ctx, id)
	if err != nil {
		return nil, err
	}
	ts, ok := fileTransferSyntax(data)
	if !ok || isNative(ts) {
		return data, nil
	}
	tc, ok := p.(instanceTranscoder)
	if !ok {
		return data, nil
	}
	out, err := tc.TranscodeInstance(ctx, id, ExplicitVRLittleEndian)
	if err != nil {
		var he *HTTPError
		// Orthanc answers 500 "Cannot transcode to transfer syntax" when it
		// has no codec; any other failure may be transient.
		if errors.As(err, &he) && (he.StatusCode < 500 || strings.Contains(strings.ToLower(he.Message), "transcode")) {
			return nil, &TranscodeError{InstanceID: id, TransferSyntax: ts, Err: err}
		}
		return nil, fmt.Errorf("transcode instance %s from %s: %w", id, ts, err)
	}
	if got, ok := fileTransferSyntax(out); ok && got != ExplicitVRLittleEndian {
		return nil, &TranscodeError{InstanceID: id, TransferSyntax: ts,
			Err: fmt.Errorf("Orthanc answered %s", got)}
	}
	return out, nil
}

// TranscodeInstance returns instance id's file in transferSyntax, made by
// Orthanc and not stored; the SOPInstanceUID and every other attribute stay as
// they are.
func (c *Client) TranscodeInstance(ctx context.Context, id, transferSyntax string) ([]byte, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("instance id %q: %w", id, ErrNotFound)
	}
	body, _ := json.Marshal(map[string]any{
		"Transcode": transferSyntax,
		"Keep":      []string{"SOPInstanceUID"},
		"Force":     true,
	})
	return c.do(ctx, http.MethodPost, "/instances/"+id+"/modify", body,
		http.Header{"Content-Type": {"application/json"}, "Accept": {"application/dicom"}})
}

// isNative reports whether segbridge's DICOM parser reads ts itself.
func isNative(ts string) bool {
	switch ts {
	case "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2":
		return true
	}
	return false
}

// fileTransferSyntax reads TransferSyntaxUID from a Part-10 file's meta
// information (always Explicit VR Little Endian); ok is false when data is
// not a well-formed Part-10 file.
func fileTransferSyntax(data []byte) (string, bool) {
	if len(data) < 132 || string(data[128:132]) != "DICM" {
		return "", false
	}
	for pos := 132; pos+8 <= len(data); {
		group := binary.LittleEndian.Uint16(data[pos:])
		elem := binary.LittleEndian.Uint16(data[pos+2:])
		if group != 0x0002 {
			return "", false
		}
		vr := string(data[pos+4 : pos+6])
		var n, hdr int
		switch vr {
		case "OB", "OD", "OF", "OL", "OW", "SQ", "UC", "UN", "UR", "UT":
			if pos+12 > len(data) {
				return "", false
			}
			n, hdr = int(binary.LittleEndian.Uint32(data[pos+8:])), 12
		default:
			n, hdr = int(binary.LittleEndian.Uint16(data[pos+6:])), 8
		}
		if n < 0 || n > len(data)-pos-hdr {
			return "", false
		}
		if elem == 0x0010 {
			return strings.TrimRight(string(data[pos+hdr:pos+hdr+n]), " \x00"), true
		}
		pos += hdr + n
	}
	return "", false
}

func transferSyntaxName(ts string) string {
	if info, err := uid.Lookup(ts); err == nil {
		return info.Name
	}
	return "an unknown transfer syntax"
}
