package orthanc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segbridge/segbridge/internal/fault"
)

// Why a cache: the done-check runs whenever someone asks about a series —
// a frontend may poll every second — and a study may hold many SEGs. An
// instance's content never changes, so what a SEG instance says about itself
// is read once and kept; a whole answer is kept for findTTL and computed once
// however many callers ask at the same time. The cost in Orthanc requests is
// then bounded per findTTL, not per poll.

// findTTL is how long a FindSEG answer is reused.
const findTTL = 2 * time.Second

// maxSEGInstances bounds the per-instance cache; it is emptied when full.
const maxSEGInstances = 50000

// SEGRef names a SEG series stored in Orthanc.
type SEGRef struct {
	SeriesID   string
	InstanceID string
}

// segInfo is what a SEG instance says about its making.
type segInfo struct {
	referencedSeries string // ReferencedSeriesSequence > SeriesInstanceUID
	algorithm        string // SegmentSequence > ... > AlgorithmName
	version          string // ... > AlgorithmVersion
	manufacturer     string // Manufacturer
}

type findResult struct {
	ref  *SEGRef
	err  error
	at   time.Time
	done chan struct{}
}

type segIndex struct {
	mu        sync.Mutex
	instances map[string]segInfo
	finds     map[string]*findResult
	now       func() time.Time
}

func newSegIndex() *segIndex {
	return &segIndex{instances: map[string]segInfo{}, finds: map[string]*findResult{}, now: time.Now}
}

// forget drops the cached answers, after this client stored something.
func (x *segIndex) forget() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k, r := range x.finds {
		select {
		case <-r.done:
			delete(x.finds, k)
		default:
		}
	}
}

// SEGManufacturer is the Manufacturer segbridge writes in its SEGs; only SEGs
// that carry it count as segbridge's results.
const SEGManufacturer = "segbridge"

// FindSEG looks in the study of a source series for a SEG that segbridge
// wrote for that series with the given algorithm name and version: its
// ReferencedSeriesSequence names the series, its Segmentation Algorithm
// Identification the model version, and its Manufacturer is segbridge. It
// returns nil, nil when there is none. It reads DICOM content, so a SEG in
// Orthanc is found even after the bridge lost all its state. Answers are
// reused for two seconds and shared by concurrent callers.
func (c *Client) FindSEG(ctx context.Context, sourceSeriesID, algorithm, version string) (*SEGRef, error) {
	key := sourceSeriesID + "\x00" + algorithm + "\x00" + version
	x := c.segs
	x.mu.Lock()
	r, ok := x.finds[key]
	if ok {
		select {
		case <-r.done:
			if x.now().Sub(r.at) > findTTL {
				ok = false
			}
		default: // another caller is computing it
		}
	}
	if !ok {
		r = &findResult{done: make(chan struct{})}
		x.finds[key] = r
		x.mu.Unlock()
		r.ref, r.err = c.findSEG(ctx, sourceSeriesID, algorithm, version)
		r.at = x.now()
		close(r.done)
		if r.err != nil {
			x.mu.Lock()
			if x.finds[key] == r {
				delete(x.finds, key) // errors are not cached
			}
			x.mu.Unlock()
		}
		return r.ref, r.err
	}
	x.mu.Unlock()
	select {
	case <-r.done:
		return r.ref, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Client) findSEG(ctx context.Context, sourceSeriesID, algorithm, version string) (*SEGRef, error) {
	src, err := c.Series(ctx, sourceSeriesID)
	if err != nil {
		return nil, err
	}
	uid := src.MainDicomTags["SeriesInstanceUID"]
	var all []Series
	if err := c.getJSON(ctx, "/studies/"+src.ParentStudy+"/series", &all); err != nil {
		return nil, err
	}
	for _, s := range all {
		if s.Modality() != "SEG" {
			continue
		}
		for _, inst := range s.Instances {
			info, err := c.segInfo(ctx, inst)
			if err != nil {
				return nil, err
			}
			if info.matches(uid, algorithm, version) {
				return &SEGRef{SeriesID: s.ID, InstanceID: inst}, nil
			}
		}
	}
	return nil, nil
}

func (i segInfo) matches(sourceUID, algorithm, version string) bool {
	return i.referencedSeries == sourceUID && i.algorithm == algorithm && i.version == version && i.manufacturer == SEGManufacturer
}

// segInfo reads (once) what a SEG instance says about its making. A tag it
// lacks reads as empty.
func (c *Client) segInfo(ctx context.Context, inst string) (segInfo, error) {
	x := c.segs
	x.mu.Lock()
	info, ok := x.instances[inst]
	x.mu.Unlock()
	if ok {
		return info, nil
	}
	for _, f := range []struct {
		path string
		dst  *string
	}{
		{"0008-0070", &info.manufacturer},
		{"0008-1115/0/0020-000e", &info.referencedSeries},
		{"0062-0002/0/0062-0007/0/0066-0036", &info.algorithm},
		{"0062-0002/0/0062-0007/0/0066-0031", &info.version},
	} {
		v, err := c.content(ctx, inst, f.path)
		if err != nil {
			return segInfo{}, err
		}
		*f.dst = v
		if f.path == "0008-0070" && v != SEGManufacturer {
			break // not ours: the rest does not matter
		}
	}
	x.mu.Lock()
	if len(x.instances) >= maxSEGInstances {
		x.instances = map[string]segInfo{}
	}
	x.instances[inst] = info
	x.mu.Unlock()
	return info, nil
}

// content reads one DICOM value of an instance as text; an absent tag is "".
func (c *Client) content(ctx context.Context, inst, path string) (string, error) {
	b, err := c.do(ctx, http.MethodGet, "/instances/"+inst+"/content/"+path, nil, nil)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\x00 "), nil
}

// ErrNotOurSEG is wrapped by VerifySEG's error for a claimed result that is
// not a SEG segbridge wrote for the job.
var ErrNotOurSEG = fault.New(fault.KindPermanent, "not a SEG segbridge wrote for this job")

// VerifySEG checks a claimed result: instance inst is in Orthanc, in series
// segSeriesID, and is a SEG segbridge wrote for the source series with the
// given algorithm name and version.
func (c *Client) VerifySEG(ctx context.Context, inst, segSeriesID, sourceSeriesID, algorithm, version string) error {
	if !ValidID(inst) || !ValidID(segSeriesID) {
		return fmt.Errorf("instance %q of series %q: %w", inst, segSeriesID, ErrNotOurSEG)
	}
	var meta struct {
		ParentSeries string
	}
	if err := c.getJSON(ctx, "/instances/"+inst, &meta); err != nil {
		return fmt.Errorf("instance %s: %w", inst, err)
	}
	if meta.ParentSeries != segSeriesID {
		return fmt.Errorf("instance %s is in series %s, not %s: %w", inst, meta.ParentSeries, segSeriesID, ErrNotOurSEG)
	}
	src, err := c.Series(ctx, sourceSeriesID)
	if err != nil {
		return err
	}
	info, err := c.segInfo(ctx, inst)
	if err != nil {
		return err
	}
	if !info.matches(src.MainDicomTags["SeriesInstanceUID"], algorithm, version) {
		return fmt.Errorf("instance %s: %w", inst, ErrNotOurSEG)
	}
	return nil
}

// ImageHeader is what sizes an image instance, read before its pixels.
type ImageHeader struct {
	Rows, Columns, NumberOfFrames, BitsAllocated, SamplesPerPixel int64
	// SOPClassUID names what the instance is, for a message when it is not
	// an image.
	SOPClassUID string
}

// ImageHeader reads the attributes that size an instance's pixel data from
// Orthanc, without downloading the instance: its tags as Orthanc decoded them
// (so the byte order and VR the file used do not matter). NumberOfFrames and
// SamplesPerPixel read as 1 when absent, the others as 0.
func (c *Client) ImageHeader(ctx context.Context, inst string) (*ImageHeader, error) {
	if !ValidID(inst) {
		return nil, fmt.Errorf("instance id %q: %w", inst, ErrNotFound)
	}
	var tags map[string]any
	if err := c.getJSON(ctx, "/instances/"+inst+"/tags?short", &tags); err != nil {
		return nil, err
	}
	h := &ImageHeader{NumberOfFrames: 1, SamplesPerPixel: 1}
	if v, ok := tags["0008,0016"].(string); ok {
		h.SOPClassUID = strings.TrimSpace(v)
	}
	for _, f := range []struct {
		tag string
		dst *int64
	}{
		{"0028,0010", &h.Rows}, {"0028,0011", &h.Columns}, {"0028,0008", &h.NumberOfFrames},
		{"0028,0100", &h.BitsAllocated}, {"0028,0002", &h.SamplesPerPixel},
	} {
		raw, ok := tags[f.tag]
		if !ok || raw == nil {
			continue
		}
		v, isText := raw.(string)
		if !isText {
			return nil, fmt.Errorf("instance %s: %s is not a single value: %w", inst, f.tag, ErrBadHeader)
		}
		// A value with several parts (VM > 1 written where 1 belongs) counts by its first.
		v, _, _ = strings.Cut(v, "\\")
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("instance %s: %s is %q, not a number: %w", inst, f.tag, v, ErrBadHeader)
		}
		*f.dst = n
	}
	return h, nil
}

// ErrBadHeader is wrapped by ImageHeader's error for a size attribute that
// is not a number: the instance is malformed.
var ErrBadHeader = fault.New(fault.KindPermanent, "malformed image header")

// InstanceTags reads an instance's top-level attributes as Orthanc decoded
// them (tags?short), by "gggg,eeee", without downloading the instance. Only
// text values are returned (a value of several parts keeps its
// backslashes); sequences and binary values are left out.
func (c *Client) InstanceTags(ctx context.Context, inst string) (map[string]string, error) {
	if !ValidID(inst) {
		return nil, fmt.Errorf("instance id %q: %w", inst, ErrNotFound)
	}
	var tags map[string]any
	if err := c.getJSON(ctx, "/instances/"+inst+"/tags?short", &tags); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(tags))
	for k, v := range tags {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out, nil
}
