package preprocess

// The implementations below are the ones segbridge shipped before the
// crop-box resampling, the run-based components and the parallel intensity
// passes: the tests hold the new code to them, voxel for voxel.

import (
	"fmt"
	"math"

	"github.com/segbridge/segbridge/internal/parallel"
)

// refLinear resamples src, on grid sg, onto grid dg with trilinear
// interpolation; samples outside src's voxel centres are 0 (scipy's
// map_coordinates with order 1 and mode constant, which FreeSurfer-style
// conform code uses). When dg only permutes and flips sg's voxels the
// values are copied exactly. dst is reused when it has dg.Len() elements.
func refLinear(src []float32, sg, dg Grid, dst []float32) ([]float32, error) {
	sn, err := sg.Voxels()
	if err != nil {
		return nil, fmt.Errorf("resample from: %w", err)
	}
	if len(src) != sn {
		return nil, fmt.Errorf("resample: %d values for a grid of %d voxels", len(src), sn)
	}
	dn, err := dg.Voxels()
	if err != nil {
		return nil, fmt.Errorf("resample onto: %w", err)
	}
	m, err := newIndexMap(sg, dg)
	if err != nil {
		return nil, err
	}
	if len(dst) != dn {
		dst = make([]float32, dn)
	}
	if axis, sign, ok := m.permutation(); ok {
		refPermute(src, sg, dg, m, axis, sign, dst)
		return dst, nil
	}
	n0, n1, n2 := sg.Dims[0], sg.Dims[1], sg.Dims[2]
	lim := [3]float64{float64(n0 - 1), float64(n1 - 1), float64(n2 - 1)}
	d0, d1 := dg.Dims[0], dg.Dims[1]
	parallel.Range(dg.Dims[2], func(lo, hi int) {
		for c := lo; c < hi; c++ {
			for b := range d1 {
				row := dst[d0*(b+d1*c) : d0*(b+d1*c)+d0]
				var base [3]float64
				for s := range 3 {
					base[s] = m.M[s][1]*float64(b) + m.M[s][2]*float64(c) + m.B[s]
				}
				for a := range d0 {
					var idx [3]int
					var f [3]float32
					inside := true
					for s := range 3 {
						x := base[s] + m.M[s][0]*float64(a)
						if x < -edge || x > lim[s]+edge {
							inside = false
							break
						}
						x = min(max(x, 0), lim[s])
						i := int(x)
						if float64(i) == lim[s] && i > 0 {
							i--
						}
						idx[s], f[s] = i, float32(x-float64(i))
					}
					if !inside {
						row[a] = 0
						continue
					}
					// Neighbour steps; 0 along an axis of one voxel.
					s0, s1, s2 := 1, n0, n0*n1
					if n0 == 1 {
						s0 = 0
					}
					if n1 == 1 {
						s1 = 0
					}
					if n2 == 1 {
						s2 = 0
					}
					p := idx[0] + n0*(idx[1]+n1*idx[2])
					fx, fy, fz := f[0], f[1], f[2]
					c00 := src[p]*(1-fx) + src[p+s0]*fx
					c10 := src[p+s1]*(1-fx) + src[p+s1+s0]*fx
					c01 := src[p+s2]*(1-fx) + src[p+s2+s0]*fx
					c11 := src[p+s2+s1]*(1-fx) + src[p+s2+s1+s0]*fx
					c0 := c00*(1-fy) + c10*fy
					c1 := c01*(1-fy) + c11*fy
					row[a] = c0*(1-fz) + c1*fz
				}
			}
		}
	})
	return dst, nil
}

// refNearest resamples labels src, on grid sg, onto grid dg with nearest
// neighbour; voxels whose nearest source voxel is outside src are 0. dst is
// reused when it has dg.Len() elements.
func refNearest(src []uint8, sg, dg Grid, dst []uint8) ([]uint8, error) {
	sn, err := sg.Voxels()
	if err != nil {
		return nil, fmt.Errorf("resample from: %w", err)
	}
	if len(src) != sn {
		return nil, fmt.Errorf("resample: %d labels for a grid of %d voxels", len(src), sn)
	}
	dn, err := dg.Voxels()
	if err != nil {
		return nil, fmt.Errorf("resample onto: %w", err)
	}
	m, err := newIndexMap(sg, dg)
	if err != nil {
		return nil, err
	}
	if len(dst) != dn {
		dst = make([]uint8, dn)
	}
	if axis, sign, ok := m.permutation(); ok {
		refPermute(src, sg, dg, m, axis, sign, dst)
		return dst, nil
	}
	n := sg.Dims
	d0, d1 := dg.Dims[0], dg.Dims[1]
	parallel.Range(dg.Dims[2], func(lo, hi int) {
		for c := lo; c < hi; c++ {
			for b := range d1 {
				row := dst[d0*(b+d1*c) : d0*(b+d1*c)+d0]
				var base [3]float64
				for s := range 3 {
					base[s] = m.M[s][1]*float64(b) + m.M[s][2]*float64(c) + m.B[s]
				}
				for a := range d0 {
					p, stride, inside := 0, 1, true
					for s := range 3 {
						// Round half up, as floor(x + 0.5).
						i := int(math.Floor(base[s] + m.M[s][0]*float64(a) + 0.5))
						if i < 0 || i >= n[s] {
							inside = false
							break
						}
						p += i * stride
						stride *= n[s]
					}
					if inside {
						row[a] = src[p]
					} else {
						row[a] = 0
					}
				}
			}
		}
	})
	return dst, nil
}

// refPermute copies voxels for a map that only permutes and flips axes: the
// destination's axis t runs along source axis axis[t] with sign sign[t].
func refPermute[T float32 | uint8](src []T, sg, dg Grid, m indexMap, axis, sign [3]int, dst []T) {
	stride := [3]int{1, sg.Dims[0], sg.Dims[0] * sg.Dims[1]}
	off := [3]int{int(math.Round(m.B[0])), int(math.Round(m.B[1])), int(math.Round(m.B[2]))}
	d0, d1 := dg.Dims[0], dg.Dims[1]
	parallel.Range(dg.Dims[2], func(lo, hi int) {
		for c := lo; c < hi; c++ {
			for b := range d1 {
				out := d0 * (b + d1*c)
				for a := range d0 {
					p, inside := 0, true
					for t, d := range [3]int{a, b, c} {
						s := axis[t]
						i := off[s] + sign[t]*d
						if i < 0 || i >= sg.Dims[s] {
							inside = false
							break
						}
						p += i * stride[s]
					}
					if inside {
						dst[out+a] = src[p]
					} else {
						dst[out+a] = 0
					}
				}
			}
		}
	})
}

// refLargestComponent keeps the largest 26-connected component of the non-zero
// labels (all labels together, as one foreground) and sets every other
// voxel to 0, in place; it returns the number of voxels it cleared. Ties go
// to the component found first in memory order.
func refLargestComponent(labels []uint8, dims [3]int) int {
	n0, n1, n2 := dims[0], dims[1], dims[2]
	comp := make([]int32, len(labels))
	var queue []int32
	var sizes []int
	for start, l := range labels {
		if l == 0 || comp[start] != 0 {
			continue
		}
		id := int32(len(sizes) + 1)
		comp[start] = id
		queue = append(queue[:0], int32(start))
		size := 0
		for len(queue) > 0 {
			p := int(queue[len(queue)-1])
			queue = queue[:len(queue)-1]
			size++
			i, j, k := p%n0, (p/n0)%n1, p/(n0*n1)
			for dk := -1; dk <= 1; dk++ {
				kk := k + dk
				if kk < 0 || kk >= n2 {
					continue
				}
				for dj := -1; dj <= 1; dj++ {
					jj := j + dj
					if jj < 0 || jj >= n1 {
						continue
					}
					for di := -1; di <= 1; di++ {
						ii := i + di
						if ii < 0 || ii >= n0 {
							continue
						}
						q := ii + n0*(jj+n1*kk)
						if labels[q] != 0 && comp[q] == 0 {
							comp[q] = id
							queue = append(queue, int32(q))
						}
					}
				}
			}
		}
		sizes = append(sizes, size)
	}
	if len(sizes) <= 1 {
		return 0
	}
	best := 0
	for i, s := range sizes {
		if s > sizes[best] {
			best = i
		}
	}
	keep, cleared := int32(best+1), 0
	for p, c := range comp {
		if c != 0 && c != keep {
			labels[p] = 0
			cleared++
		}
	}
	return cleared
}

// refRobustRange is FreeSurfer's conform intensity range: the minimum of data
// and the upper percentile (0..100, FreeSurfer's 99.9) of its non-zero
// voxels.
func refRobustRange(data []float32, upper float64) (lo, hi float64) {
	lo = math.Inf(1)
	nz := make([]float32, 0, len(data)/2)
	for _, x := range data {
		lo = min(lo, float64(x))
		if math.Abs(float64(x)) >= 1e-15 {
			nz = append(nz, x)
		}
	}
	if len(nz) == 0 {
		return lo, lo
	}
	return lo, quantilesInPlace(nz, upper/100)[0]
}

// refMinMax maps data's minimum to 0 and maximum to 1, in place. A constant
// volume (or one of NaNs only) becomes all 0.
func refMinMax(data []float32) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range data {
		lo = min(lo, float64(x))
		hi = max(hi, float64(x))
	}
	refWindow(data, lo, hi, false)
}

// refForeground returns the bounding box of the voxels of data (on a grid of
// dims) above threshold, grown by pad voxels on every side within the grid.
// ok is false when no voxel is above threshold.
func refForeground(data []float32, dims [3]int, threshold float32, pad int) (b Box, ok bool) {
	b.Lo = dims
	for k := range dims[2] {
		for j := range dims[1] {
			row := data[dims[0]*(j+dims[1]*k):][:dims[0]]
			first := -1
			for i, x := range row {
				if x > threshold {
					first = i
					break
				}
			}
			if first < 0 {
				continue
			}
			last := first
			for i := dims[0] - 1; i > first; i-- {
				if row[i] > threshold {
					last = i
					break
				}
			}
			ok = true
			b.Lo = [3]int{min(b.Lo[0], first), min(b.Lo[1], j), min(b.Lo[2], k)}
			b.Hi = [3]int{max(b.Hi[0], last+1), max(b.Hi[1], j+1), max(b.Hi[2], k+1)}
		}
	}
	if !ok {
		return Box{}, false
	}
	for t := range 3 {
		b.Lo[t] = max(0, b.Lo[t]-pad)
		b.Hi[t] = min(dims[t], b.Hi[t]+pad)
	}
	return b, true
}

func refWindow(data []float32, lo, hi float64, clip bool) {
	if !(hi > lo) {
		clear(data)
		return
	}
	s := 1 / (hi - lo)
	for i := range data {
		y := (float64(data[i]) - lo) * s
		if clip {
			y = min(max(y, 0), 1)
		}
		data[i] = float32(y)
	}
}
