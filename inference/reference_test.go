package inference

// prepareReference and finishReference are prepare and finish as segbridge
// shipped them before the crop-box resampling: the whole model grid
// resampled in float32, then cropped; labels pasted into the whole grid and
// mapped back. The tests hold the new ones to them, voxel for voxel.

import (
	"fmt"
	"time"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/preprocess"
	"github.com/segbridge/segbridge/internal/volume"
)

// prepareReference runs the manifest's geometry and intensity steps: reorient,
// resample or conform, normalise, crop. v is not modified. step records how
// long each took.
func prepareReference(m *model.Model, v *volume.Volume, step func(string, time.Time) time.Duration) (*prepared, error) {
	p := &prepared{src: preprocess.FromGeometry(v.Geometry)}
	g := m.Preprocess.Geometry

	t0 := time.Now()
	var err error
	p.grid, p.same = p.src, true
	var robust *[2]float64
	switch {
	case g.Conform != nil:
		c := g.Conform
		if p.grid, err = preprocess.Conform(p.src, c.Size, c.VoxelSize, c.Orientation); err != nil {
			return nil, gridError(err)
		}
		p.same = false
		if c.Scale == model.IntensityRobust255 {
			// FreeSurfer takes the range from the series, before resampling.
			lo, hi := preprocess.RobustRange(v.Data, 99.9)
			robust = &[2]float64{lo, hi}
		}
	default:
		if g.Orientation != "" {
			if p.grid, err = preprocess.Reorient(p.grid, g.Orientation); err != nil {
				return nil, err
			}
			p.same = false
		}
		if len(g.Spacing) == 3 {
			if p.grid, err = preprocess.Respace(p.grid, [3]float64(g.Spacing)); err != nil {
				return nil, gridError(err)
			}
			p.same = false
		}
	}
	// The series' own grid is bounded only by the worker's limits, which
	// may be raised past what the voxel loops index.
	if _, err := p.grid.Voxels(); err != nil {
		return nil, gridError(err)
	}
	var data []float32
	if p.same {
		data = append([]float32(nil), v.Data...)
	} else if data, err = preprocess.Linear(v.Data, p.src, p.grid, nil); err != nil {
		return nil, gridError(err)
	}
	if robust != nil {
		preprocess.Scale255(data, robust[0], robust[1])
	}
	if !p.same {
		step("geometry", t0)
	}

	t0 = time.Now()
	normalise(data, m.Preprocess.Intensity)
	step("intensity", t0)

	p.box = preprocess.Box{Hi: p.grid.Dims}
	p.data = data
	if c := g.Crop; c != nil {
		t0 = time.Now()
		hi := float32(0)
		for _, x := range data {
			hi = max(hi, x)
		}
		if b, ok := preprocess.Foreground(data, p.grid.Dims, float32(c.AutoThreshold)*hi, c.Padding); ok && b != p.box {
			p.box, p.crop = b, true
			p.data = preprocess.Extract(data, p.grid.Dims, b)
		}
		step("crop", t0)
	}
	return p, nil
}

// finishReference turns the labels of the box into labels of the series' grid: largest
// connected component, paste into the model's grid, map back to the series'
// grid (nearest neighbour).
func finishReference(m *model.Model, p *prepared, labels []uint8, step func(string, time.Time) time.Duration) ([]uint8, error) {
	if m.Output.LargestComponent {
		t0 := time.Now()
		preprocess.LargestComponent(labels, p.box.Dims())
		step("components", t0)
	}
	t0 := time.Now()
	if p.crop {
		full := make([]uint8, p.grid.Len())
		preprocess.Paste(full, p.grid.Dims, p.box, labels)
		labels = full
	}
	if p.same {
		return labels, nil
	}
	out, err := preprocess.Nearest(labels, p.grid, p.src, nil)
	if err != nil {
		return nil, fmt.Errorf("map labels back: %w", err)
	}
	step("map back", t0)
	return out, nil
}
