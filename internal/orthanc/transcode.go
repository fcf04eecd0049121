package orthanc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/segbridge/segbridge/internal/volume"
)

// Why transcoding is done this way: Orthanc 1.10.1 (Debian 12) ignores both
// the transfer-syntax parameter of an Accept header and a ?transcode= argument
// on GET /instances/{id}/file and always answers the stored bytes. What it does
// support is POST /instances/{id}/modify with "Transcode", which answers the
// modified file without storing it; with "Keep": ["SOPInstanceUID"] and
// "Force": true nothing but the encoding changes. A file is asked for twice
// only when it is stored compressed: the stored bytes are fetched first and
// their file meta information says whether they need it.
//
// Why only the JPEG family: JPEG 2000 is decoded in Orthanc only by a
// plugin, and with Debian's orthanc-gdcm a transcode of a lossy JPEG 2000
// instance can kill the whole Orthanc process: segbridge's download would
// take the hospital's PACS down. So the allowlist is volume's DecodeByOrthanc
// syntaxes (JPEG-LS), which Orthanc's built-in DCMTK codecs decode;
// segbridge decodes JPEG (baseline, extended, lossless; internal/jpeg),
// JPEG 2000, HTJ2K, RLE and deflate itself (internal/volume, internal/codec)
// and refuses any other syntax by name without asking Orthanc.
//
// Why the GDCM check: Orthanc tries decoding plugins before its built-in
// codecs ("BuiltinDecoderTranscoderOrder": "After" is the default), and
// Debian's orthanc-gdcm 1.5 in its default configuration kills Orthanc
// 1.10.1 within a few dozen transcodes of any of the JPEG family (measured
// on ch2 series: baseline, extended, lossless, JPEG-LS; see the README). With
// the plugin restricted to JPEG 2000 ("Gdcm": {"RestrictTransferSyntaxes":
// [...]}) the same transcodes go to DCMTK and Orthanc lives. Orthanc's REST
// API shows which plugins are loaded but not how they are configured, so
// segbridge asks an Orthanc with GDCM loaded to transcode nothing unless
// the operator says the plugin is restricted (Config.GDCMRestricted).

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
	return fmt.Sprintf("instance %s is stored as %s (%s) and Orthanc could not transcode it to Explicit VR Little Endian (%v): "+
		"Orthanc's built-in codec refused the file, which may be corrupt; send the series uncompressed",
		e.InstanceID, volume.TransferSyntaxName(e.TransferSyntax), e.TransferSyntax, e.Err)
}

func (e *TranscodeError) Unwrap() []error {
	return []error{ErrCannotTranscode, volume.ErrInvalidSeries, e.Err}
}

// instanceFiler downloads an instance's stored file.
type instanceFiler interface {
	InstanceFile(ctx context.Context, id string) ([]byte, error)
}

// recycler takes back a file InstanceFile returned (Client.Recycle).
type recycler interface {
	Recycle(file []byte)
}

var _ recycler = (*Client)(nil)

// instanceTranscoder asks for an instance's file in another transfer syntax.
type instanceTranscoder interface {
	TranscodeInstance(ctx context.Context, id, transferSyntax string) ([]byte, error)
}

var _ instanceTranscoder = (*Client)(nil)

// UncompressedInstanceFile downloads instance id and, only when it is stored
// in one of the JPEG syntaxes that Orthanc's built-in codecs decode (see
// volume.TransferSyntaxDecoding: DecodeByOrthanc), asks Orthanc for it
// transcoded to Explicit VR Little Endian. Every other file is returned as
// stored: volume decodes uncompressed, deflated, RLE, JPEG 2000 and HTJ2K
// data itself and refuses any other syntax by name. p is usually a *Client;
// a p that cannot transcode (a test double) gets the stored bytes back, which
// the DICOM parser then refuses with its own reason. Bytes that are not a
// Part-10 file are returned as they are, for the parser to refuse.
func UncompressedInstanceFile(ctx context.Context, p instanceFiler, id string) ([]byte, error) {
	data, err := p.InstanceFile(ctx, id)
	if err != nil {
		return nil, err
	}
	ts, ok := volume.FileTransferSyntax(data)
	if !ok || volume.TransferSyntaxDecoding(ts) != volume.DecodeByOrthanc {
		return data, nil
	}
	tc, ok := p.(instanceTranscoder)
	if !ok {
		return data, nil
	}
	if g, ok := p.(transcodeGuard); ok {
		if err := g.transcodeSafe(ctx); err != nil {
			var ue *UnsafeTranscodeError
			if errors.As(err, &ue) {
				ue.InstanceID, ue.TransferSyntax = id, ts
			}
			return nil, err
		}
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
	if got, ok := volume.FileTransferSyntax(out); ok && got != ExplicitVRLittleEndian {
		return nil, &TranscodeError{InstanceID: id, TransferSyntax: ts,
			Err: fmt.Errorf("Orthanc answered %s", got)}
	}
	if r, ok := p.(recycler); ok {
		r.Recycle(data) // the stored file, replaced by its transcoded copy
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

// UnsafeTranscodeError says that segbridge will not ask this Orthanc to
// transcode, because a plugin loaded in it could crash it. It wraps
// volume.ErrInvalidSeries: the job fails at once, with a reason that says
// what to change.
type UnsafeTranscodeError struct {
	InstanceID     string
	TransferSyntax string
	Plugin         string
}

func (e *UnsafeTranscodeError) Error() string {
	return fmt.Sprintf("instance %s is stored as %s (%s), which segbridge has Orthanc transcode, but Orthanc has the %s plugin "+
		"loaded, which decodes JPEG before Orthanc's own codecs and can crash Orthanc on such files: restrict the plugin to "+
		`JPEG 2000 in Orthanc's configuration ("Gdcm": {"RestrictTransferSyntaxes": ["1.2.840.10008.1.2.4.90", `+
		`"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"]}) and set `+
		"SEGBRIDGE_ORTHANC_GDCM_RESTRICTED=true, or send the series uncompressed",
		e.InstanceID, volume.TransferSyntaxName(e.TransferSyntax), e.TransferSyntax, e.Plugin)
}

func (e *UnsafeTranscodeError) Unwrap() error { return volume.ErrInvalidSeries }

// transcodeGuard says whether asking for a transcode is safe.
type transcodeGuard interface {
	transcodeSafe(ctx context.Context) error
}

var _ transcodeGuard = (*Client)(nil)

// pluginCacheTTL is how long the list of Orthanc's plugins is trusted;
// plugins change only when Orthanc restarts.
const pluginCacheTTL = 5 * time.Minute

// pluginCache remembers Orthanc's loaded plugins.
type pluginCache struct {
	mu      sync.Mutex
	plugins []string
	at      time.Time
}

// transcodeSafe returns an *UnsafeTranscodeError when Orthanc has the GDCM
// plugin loaded and the configuration does not say it is restricted.
func (c *Client) transcodeSafe(ctx context.Context) error {
	if c.cfg.GDCMRestricted {
		return nil
	}
	plugins, err := c.loadedPlugins(ctx)
	if err != nil {
		return fmt.Errorf("list Orthanc's plugins before asking it to transcode: %w", err)
	}
	for _, p := range plugins {
		if strings.EqualFold(p, "gdcm") {
			return &UnsafeTranscodeError{Plugin: p}
		}
	}
	return nil
}

// loadedPlugins returns the names Orthanc's GET /plugins lists, cached.
func (c *Client) loadedPlugins(ctx context.Context) ([]string, error) {
	c.plugins.mu.Lock()
	defer c.plugins.mu.Unlock()
	if c.plugins.plugins != nil && time.Since(c.plugins.at) < pluginCacheTTL {
		return c.plugins.plugins, nil
	}
	var plugins []string
	if err := c.getJSON(ctx, "/plugins", &plugins); err != nil {
		return nil, err
	}
	if plugins == nil {
		plugins = []string{}
	}
	c.plugins.plugins, c.plugins.at = plugins, time.Now()
	return plugins, nil
}
