// Package resultview reads a done job's result back from Orthanc — its
// source series and its SEG — and makes what the status page shows of it: the
// segments with their volumes in mL and the three-plane preview PNG. The SEG
// in Orthanc is the record, so the page shows the same for a job this bridge
// ran, one a remote worker ran, and one found in Orthanc after the bridge
// lost its state. A result is computed once per SEG instance and kept.
package resultview

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"image/png"
	"sync"
	"time"

	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/preview"
	"github.com/segbridge/segbridge/internal/volume"
)

// segReader reads a SEG instance's file from Orthanc.
type segReader interface {
	InstanceFile(ctx context.Context, id string) ([]byte, error)
}

var _ segReader = (*orthanc.Client)(nil)

// Config configures a Renderer. Every zero field but Load takes its default.
type Config struct {
	// Load reads a source series into a volume, as a job does
	// (worker.LoadSeries with the limits and decoder of the deployment).
	// Required.
	Load func(ctx context.Context, seriesID string) (*volume.Volume, error)
	// Renders is how many results are computed at once; more callers wait.
	// Default 2: a result holds a whole source volume while it is made.
	Renders int
	// Keep is how many results are kept. Default 32.
	Keep int
}

func (c Config) withDefaults() Config {
	if c.Renders <= 0 {
		c.Renders = 2
	}
	if c.Keep <= 0 {
		c.Keep = 32
	}
	return c
}

// Segment is one segment of a result.
type Segment struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	// Colour is its display colour, "#rrggbb".
	Colour string `json:"colour"`
	Voxels int    `json:"voxels"`
	// VolumeML is Voxels times the SEG's voxel volume.
	VolumeML float64 `json:"volume_ml"`
}

// Result is what the status page shows of a done job.
type Result struct {
	SourceSeriesID string    `json:"series_id"`
	SEGInstanceID  string    `json:"seg_instance_id"`
	Algorithm      string    `json:"algorithm,omitempty"`
	Version        string    `json:"algorithm_version,omitempty"`
	Segments       []Segment `json:"segments"`
	// VoxelML is the volume of one SEG voxel, in mL.
	VoxelML float64 `json:"voxel_ml"`
	// Preview says where each plane of PNG lies and which voxels it shows;
	// nil when the segmentation is empty (there is no PNG then).
	Preview *preview.Layout `json:"preview,omitempty"`
	PNG     []byte          `json:"-"`
}

// Renderer makes results and keeps the latest ones.
type Renderer struct {
	pacs segReader
	cfg  Config
	sem  chan struct{}

	mu    sync.Mutex
	cache map[string]*list.Element // SEG instance id -> *entry
	order *list.List               // most recent first
}

type entry struct {
	key  string
	done chan struct{}
	res  *Result
	err  error
}

// New makes a Renderer reading SEGs from Orthanc and source series with
// cfg.Load.
func New(p segReader, cfg Config) (*Renderer, error) {
	if p == nil || cfg.Load == nil {
		return nil, errors.New("resultview: an Orthanc and Config.Load are required")
	}
	cfg = cfg.withDefaults()
	return &Renderer{pacs: p, cfg: cfg, sem: make(chan struct{}, cfg.Renders), cache: map[string]*list.Element{}, order: list.New()}, nil
}

// Render returns the result of the SEG instance segInstanceID of source
// series sourceSeriesID, made once and shared by concurrent callers. Errors
// are not kept: the next call tries again.
func (r *Renderer) Render(ctx context.Context, sourceSeriesID, segInstanceID string) (*Result, error) {
	key := sourceSeriesID + "/" + segInstanceID
	r.mu.Lock()
	if el, ok := r.cache[key]; ok {
		r.order.MoveToFront(el)
		e := el.Value.(*entry)
		r.mu.Unlock()
		select {
		case <-e.done:
			return e.res, e.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e := &entry{key: key, done: make(chan struct{})}
	r.cache[key] = r.order.PushFront(e)
	for r.order.Len() > r.cfg.Keep {
		old := r.order.Back()
		r.order.Remove(old)
		delete(r.cache, old.Value.(*entry).key)
	}
	r.mu.Unlock()

	// The result is shared: a caller that goes away must not fail it for
	// the others waiting on it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renderTimeout)
	e.res, e.err = r.render(rctx, sourceSeriesID, segInstanceID)
	cancel()
	close(e.done)
	if e.err != nil {
		r.mu.Lock()
		if el, ok := r.cache[key]; ok && el.Value == e {
			r.order.Remove(el)
			delete(r.cache, key)
		}
		r.mu.Unlock()
	}
	return e.res, e.err
}

// renderTimeout bounds making one result (downloading the source series).
const renderTimeout = 2 * time.Minute

// ErrMismatch is wrapped by Render's error when the SEG does not lie on its
// source series (another series, another grid).
var ErrMismatch = errors.New("the SEG does not fit the series")

func (r *Renderer) render(ctx context.Context, sourceSeriesID, segInstanceID string) (*Result, error) {
	select {
	case r.sem <- struct{}{}:
		defer func() { <-r.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	segBytes, err := r.pacs.InstanceFile(ctx, segInstanceID)
	if err != nil {
		return nil, fmt.Errorf("read SEG %s: %w", segInstanceID, err)
	}
	seg, err := dicomseg.Decode(segBytes)
	if err != nil {
		return nil, fmt.Errorf("SEG %s: %w", segInstanceID, err)
	}
	segBytes = nil
	res := &Result{SourceSeriesID: sourceSeriesID, SEGInstanceID: segInstanceID, VoxelML: seg.VoxelVolumeML()}
	voxels := seg.Voxels()
	for i, s := range seg.Segments {
		res.Segments = append(res.Segments, Segment{
			Number: s.Number, Name: s.Label, Colour: fmt.Sprintf("#%02x%02x%02x", s.RGB[0], s.RGB[1], s.RGB[2]),
			Voxels: voxels[i], VolumeML: float64(voxels[i]) * res.VoxelML,
		})
		if res.Algorithm == "" {
			res.Algorithm, res.Version = s.AlgorithmName, s.AlgorithmVersion
		}
	}

	vol, err := r.cfg.Load(ctx, sourceSeriesID)
	if err != nil {
		return nil, err
	}
	if seg.ReferencedSeriesUID != "" && seg.ReferencedSeriesUID != vol.SeriesInstanceUID {
		return nil, fmt.Errorf("SEG %s is of series %s, not %s: %w", segInstanceID, seg.ReferencedSeriesUID, vol.SeriesInstanceUID, ErrMismatch)
	}
	labels, err := seg.OnGrid(vol.Slices, vol.Cols, vol.Rows)
	if err != nil {
		return nil, fmt.Errorf("SEG %s on series %s: %w: %w", segInstanceID, sourceSeriesID, ErrMismatch, err)
	}
	segs := make([]preview.Segment, 0, len(seg.Segments))
	for _, s := range seg.Segments {
		if s.Number > 0 && s.Number < 256 {
			segs = append(segs, preview.Segment{Label: uint8(s.Number), Name: s.Label, RGB: s.RGB})
		}
	}
	img, lay, err := preview.Planes(vol, labels, segs)
	if errors.Is(err, preview.ErrEmpty) {
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode preview: %w", err)
	}
	res.Preview, res.PNG = lay, buf.Bytes()
	return res, nil
}
