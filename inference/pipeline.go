package inference

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/parallel"
	"github.com/segbridge/segbridge/internal/preprocess"
	"github.com/segbridge/segbridge/internal/volume"
)

// prepared is a volume made ready for a model: the model's grid, the part of
// it the model runs on, and that part's normalised intensities.
type prepared struct {
	src  preprocess.Grid // the series' grid
	grid preprocess.Grid // the model's whole grid
	same bool            // grid is src: no resampling either way
	box  preprocess.Box  // the part of grid fed to the model
	crop bool            // box is smaller than grid
	data []float32       // box's voxels, normalised

	// resampled is how many voxels of grid were resampled: the whole grid,
	// or (conformed and cropped) only a box around the foreground.
	resampled int
}

// prepare runs the manifest's geometry and intensity steps: reorient,
// resample or conform, normalise, crop. v is not modified unless reuse is
// set, when a model on the series' own grid gets v.Data normalised in
// place rather than a copy. step records how long each took.
func prepare(m *model.Model, v *volume.Volume, reuse bool, step func(string, time.Time) time.Duration) (*prepared, error) {
	p := &prepared{src: preprocess.FromGeometry(v.Geometry)}
	g := m.Preprocess.Geometry

	t0 := time.Now()
	var err error
	p.grid, p.same = p.src, true
	robust := false
	switch {
	case g.Conform != nil:
		c := g.Conform
		if p.grid, err = preprocess.Conform(p.src, c.Size, c.VoxelSize, c.Orientation); err != nil {
			return nil, gridError(err)
		}
		p.same = false
		robust = c.Scale == model.IntensityRobust255
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
	n, err := p.grid.Voxels()
	if err != nil {
		return nil, gridError(err)
	}
	p.box = preprocess.Box{Hi: p.grid.Dims}
	p.resampled = n
	// FreeSurfer's scaling makes whole numbers 0..255, which uint8 holds
	// exactly; the float path remains for values whose means could
	// overflow.
	if robust {
		if vlo, vhi := preprocess.Range(v.Data); preprocess.Finite(vlo, vhi) {
			if err := p.conform(m, v, max(-vlo, vhi), t0, step); err != nil {
				return nil, err
			}
			return p, nil
		}
	}

	var data []float32
	if p.same && reuse {
		data = v.Data
	} else {
		data = make([]float32, n)
	}
	if p.same {
		t0 = time.Now()
		normaliseInto(data, v.Data, m.Preprocess.Intensity)
		step("intensity", t0)
	} else {
		if data, err = preprocess.Linear(v.Data, p.src, p.grid, data); err != nil {
			return nil, gridError(err)
		}
		if robust {
			lo, hi := preprocess.RobustRange(v.Data, 99.9) // FreeSurfer's, from the series
			preprocess.Scale255(data, lo, hi)
		}
		step("geometry", t0)
		t0 = time.Now()
		normaliseInto(data, data, m.Preprocess.Intensity)
		step("intensity", t0)
	}

	p.data = data
	if c := g.Crop; c != nil {
		t0 = time.Now()
		_, hi := preprocess.Range(data)
		hi = max(0, hi) // as a running max from 0 gives, NaN included
		if b, ok := preprocess.Foreground(data, p.grid.Dims, float32(c.AutoThreshold)*float32(hi), c.Padding); ok && b != p.box {
			p.box, p.crop = b, true
			p.data = preprocess.Extract(data, p.grid.Dims, b)
		}
		step("crop", t0)
	}
	return p, nil
}

// conform is prepare's path for FreeSurfer's conform with its uint8
// scaling: the conformed values are whole numbers 0..255, held as uint8.
//
// When the model is also min-max normalised and cropped to its foreground,
// only a box around that foreground is resampled, where the whole 256³
// grid used to be (three times the voxels of a head's crop, and 64 MiB of
// float32): min-max maps the grid's smallest and largest values to 0 and
// 1, and those are 0 (air) and 255 (anything at or above the series'
// 99.9th percentile) whenever the box holds both, since no conformed value
// lies outside 0..255. With those, the foreground's threshold is known in
// advance; preprocess.CandidateBox bounds, from the series alone, where
// samples above it can be; that box grown by the padding holds every voxel
// the model will see. Should the box not hold a 0 and a 255, or the
// foreground reach outside it, the whole grid is resampled as before, so
// the model's input is always exactly what resampling the whole grid gives.
func (p *prepared) conform(m *model.Model, v *volume.Volume, big float64, t0 time.Time, step func(string, time.Time) time.Duration) error {
	crop := m.Preprocess.Geometry.Crop
	in := m.Preprocess.Intensity
	minmax := in.Method == model.IntensityMinMax || in.Method == ""
	lo, hi := preprocess.RobustRange(v.Data, 99.9) // FreeSurfer's, from the series
	whole := preprocess.Box{Hi: p.grid.Dims}
	region := whole
	fgMin := -1 // the smallest conformed value in the foreground, if 0 and 255 are the extremes
	if crop != nil && minmax {
		norm := preprocess.WindowTable(0, 255, false)
		thr := float32(crop.AutoThreshold) * norm[255]
		for s, x := range norm {
			if x > thr {
				fgMin = s
				break
			}
		}
		// Samples outside the series are 0: they must be background for
		// the candidates to bound the foreground.
		if above := preprocess.Scale255Threshold(lo, hi, uint8(max(fgMin, 0))); fgMin > 0 && above > 0 {
			cand, ok, err := preprocess.CandidateBox(v.Data, p.src, p.grid, above, big)
			if err != nil {
				return gridError(err)
			}
			if ok {
				region = cand.Grow(crop.Padding, p.grid.Dims)
			}
		}
	}
	u8, err := preprocess.LinearScale255Box(v.Data, p.src, p.grid, region, lo, hi)
	if err != nil {
		return gridError(err)
	}
	vmin, vmax := rangeU8(u8)
	if region != whole && (vmin != 0 || vmax != 255) {
		region = whole
		if u8, err = preprocess.LinearScale255Box(v.Data, p.src, p.grid, whole, lo, hi); err != nil {
			return gridError(err)
		}
		vmin, vmax = rangeU8(u8)
	}
	p.resampled = region.Voxels()
	step("geometry", t0)

	if !minmax {
		// Any other normalisation works on the whole grid's float values.
		t0 = time.Now()
		data := make([]float32, len(u8))
		for i, x := range u8 {
			data[i] = float32(x)
		}
		normaliseInto(data, data, in)
		step("intensity", t0)
		p.data = data
		if crop != nil {
			t0 = time.Now()
			_, top := preprocess.Range(data)
			top = max(0, top)
			if b, ok := preprocess.Foreground(data, p.grid.Dims, float32(crop.AutoThreshold)*float32(top), crop.Padding); ok && b != whole {
				p.box, p.crop = b, true
				p.data = preprocess.Extract(data, p.grid.Dims, b)
			}
			step("crop", t0)
		}
		return nil
	}

	t0 = time.Now()
	norm := preprocess.WindowTable(float64(vmin), float64(vmax), false)
	p.box = whole
	if crop != nil {
		// The normalised maximum is the largest value's, the table being
		// monotone; as a running max from 0 it is never below 0.
		thr := float32(crop.AutoThreshold) * max(0, norm[vmax])
		fg, ok := boxU8(u8, region, func(x uint8) bool { return norm[x] > thr })
		if ok {
			if b := fg.Grow(crop.Padding, p.grid.Dims); b != whole {
				p.box, p.crop = b, true
			}
		}
		if !region.Contains(p.box) {
			// The foreground reaches past the candidates (no foreground at
			// all, so the whole grid is the input): resample the whole.
			if u8, err = preprocess.LinearScale255Box(v.Data, p.src, p.grid, whole, lo, hi); err != nil {
				return gridError(err)
			}
			region = whole
			p.resampled = whole.Voxels()
		}
	}
	p.data = tableBox(u8, region, p.box, norm)
	step("intensity", t0)
	return nil
}

// rangeU8 returns the smallest and largest value of data, over the CPUs.
func rangeU8(data []uint8) (lo, hi uint8) {
	var mu sync.Mutex
	var seen [256]bool
	parallel.Range(len(data), func(a, b int) {
		var mine [256]bool
		for _, x := range data[a:b] {
			mine[x] = true
		}
		mu.Lock()
		for x, ok := range mine {
			seen[x] = seen[x] || ok
		}
		mu.Unlock()
	})
	lo, hi = 255, 0
	for x, ok := range seen {
		if ok {
			lo, hi = min(lo, uint8(x)), max(hi, uint8(x))
		}
	}
	return lo, hi
}

// boxU8 is the bounding box, in grid coordinates, of the voxels of data
// (the values of region, a box of the grid) that keep picks.
func boxU8(data []uint8, region preprocess.Box, keep func(uint8) bool) (preprocess.Box, bool) {
	rd := region.Dims()
	var pick [256]bool
	for x := range pick {
		pick[x] = keep(uint8(x))
	}
	b, ok := preprocess.BoxWhere(rd, func(row int) (first, last int) {
		r := data[rd[0]*row:][:rd[0]]
		first = -1
		for i, x := range r {
			if pick[x] {
				first = i
				break
			}
		}
		if first < 0 {
			return -1, -1
		}
		last = first
		for i := len(r) - 1; i > first; i-- {
			if pick[r[i]] {
				last = i
				break
			}
		}
		return first, last
	})
	if !ok {
		return b, false
	}
	for t := range 3 {
		b.Lo[t] += region.Lo[t]
		b.Hi[t] += region.Lo[t]
	}
	return b, true
}

// tableBox maps the voxels of box, a part of region, from the values of
// region in data through table.
func tableBox(data []uint8, region, box preprocess.Box, table *[256]float32) []float32 {
	rd, bd := region.Dims(), box.Dims()
	out := make([]float32, bd[0]*bd[1]*bd[2])
	parallel.Range(bd[2], func(lo, hi int) {
		for k := lo; k < hi; k++ {
			for j := range bd[1] {
				src := (box.Lo[0] - region.Lo[0]) + rd[0]*((box.Lo[1]-region.Lo[1]+j)+rd[1]*(box.Lo[2]-region.Lo[2]+k))
				row := data[src : src+bd[0]]
				dst := out[bd[0]*(j+bd[1]*k):][:bd[0]]
				for i, x := range row {
					dst[i] = table[x]
				}
			}
		}
	})
	return out
}

// gridError marks a grid over preprocess.MaxGridVoxels as the model not
// fitting its input: the manifest's geometry applied to this series (or to
// its corrupt spacing) gives the same grid on every attempt.
func gridError(err error) error {
	if errors.Is(err, preprocess.ErrGridTooLarge) {
		return fmt.Errorf("%w: %w", err, ErrModelMismatch)
	}
	return err
}

// finish turns the labels of the box into labels of the series' grid:
// largest connected component, then nearest neighbour from the box onto the
// series' grid (background outside the box), without ever making the
// model's whole grid.
func finish(m *model.Model, p *prepared, labels []uint8, step func(string, time.Time) time.Duration) ([]uint8, error) {
	if m.Output.LargestComponent {
		t0 := time.Now()
		preprocess.LargestComponent(labels, p.box.Dims())
		step("components", t0)
	}
	t0 := time.Now()
	if p.same {
		if p.crop {
			full := make([]uint8, p.grid.Len())
			preprocess.Paste(full, p.grid.Dims, p.box, labels)
			labels = full
		}
		return labels, nil
	}
	out, err := preprocess.NearestFromBox(labels, p.grid, p.box, p.src, nil)
	if err != nil {
		return nil, fmt.Errorf("map labels back: %w", err)
	}
	step("map back", t0)
	return out, nil
}
