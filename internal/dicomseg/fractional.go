package dicomseg

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/segbridge/segbridge/internal/checked"
	"github.com/segbridge/segbridge/internal/volume"
)

// MaxFractionalValue is the MaximumFractionalValue of a FRACTIONAL SEG: a
// stored value f means probability f/255.
const MaxFractionalValue = 255

// EncodeFractional returns a FRACTIONAL DICOM SEG (SegmentationFractionalType
// PROBABILITY, 8 bits per pixel) of per-segment probability volumes on v's
// grid. probs[n] holds segment segs[n]'s probabilities in 0..1, one per voxel
// in the order of Volume.Data; each is stored as round(p*255). Frames follow
// the same policy as Encode's: one per (segment, slice) with a non-zero stored
// value, and one all-zero frame on slice 0 for a segment with none.
// SegmentsOverlap is YES when two segments have a non-zero value at one voxel.
//
// The worker does not write fractional SEGs yet: the model manifest has no
// field asking for them. Viewer support is also thinner than for BINARY.
func EncodeFractional(v *volume.Volume, probs [][]float32, segs []Segment, opts Options) (*Result, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	if err := checkVolume(v); err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	if len(probs) != len(segs) {
		return nil, fmt.Errorf("probabilities: %d volumes for %d segments", len(probs), len(segs))
	}
	nvox, ok := checked.Mul(v.Cols, v.Rows, v.Depth)
	if !ok {
		return nil, fmt.Errorf("volume: %dx%dx%d voxels are more than can be counted", v.Cols, v.Rows, v.Depth)
	}
	type pair struct {
		seg Segment
		p   []float32
	}
	pairs := make([]pair, len(segs))
	for i := range segs {
		if len(probs[i]) != nvox {
			return nil, fmt.Errorf("probabilities of segment %q: %d voxels, volume has %d", segs[i].Name, len(probs[i]), nvox)
		}
		pairs[i] = pair{segs[i], probs[i]}
	}
	slices.SortFunc(pairs, func(a, b pair) int { return a.seg.Label - b.seg.Label })
	sorted, err := sortSegments(segs)
	if err != nil {
		return nil, err
	}

	// Quantise once; a voxel outside 0..1 or not a number is an error.
	q := make([][]uint8, len(pairs))
	for n, pr := range pairs {
		q[n] = make([]uint8, nvox)
		for i, p := range pr.p {
			if !(p >= 0 && p <= 1) {
				return nil, fmt.Errorf("probabilities of segment %q: voxel %d is %v, not in 0..1", pr.seg.Name, i, p)
			}
			q[n][i] = uint8(math.Round(float64(p) * MaxFractionalValue))
		}
	}
	npix := v.Cols * v.Rows
	var frames []frameRef
	for n := range q {
		before := len(frames)
		for k := range v.Depth {
			if slices.ContainsFunc(q[n][k*npix:(k+1)*npix], func(x uint8) bool { return x != 0 }) {
				frames = append(frames, frameRef{segment: n + 1, k: k})
			}
		}
		if len(frames) == before {
			frames = append(frames, frameRef{segment: n + 1, k: 0})
		}
	}
	if len(frames) == 0 {
		return nil, errors.New("no frames")
	}
	overlaps := false
	if len(q) > 1 {
	scan:
		for i := range nvox {
			seen := false
			for n := range q {
				if q[n][i] != 0 {
					if seen {
						overlaps = true
						break scan
					}
					seen = true
				}
			}
		}
	}
	n, err := pixelDataLength(len(frames), v.Rows, v.Cols, 8)
	if err != nil {
		return nil, err
	}
	pixels := make([]byte, n)
	for f, fr := range frames {
		copy(pixels[f*npix:(f+1)*npix], q[fr.segment-1][fr.k*npix:(fr.k+1)*npix])
	}
	e := &encoder{fractional: true, overlaps: overlaps, v: v, segs: sorted, frames: frames, opts: opts}
	return e.encode(pixels)
}
