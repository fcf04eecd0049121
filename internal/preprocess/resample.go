package preprocess

import (
	"fmt"
	"math"

	"github.com/segbridge/segbridge/internal/parallel"
)

// edge is how far outside the first and last voxel centre a sample may fall
// and still count as inside (rounding in the grid arithmetic).
const edge = 1e-4

// Linear resamples src, on grid sg, onto grid dg with trilinear
// interpolation; samples outside src's voxel centres are 0 (scipy's
// map_coordinates with order 1 and mode constant, which FreeSurfer-style
// conform code uses). When dg only permutes and flips sg's voxels the
// values are copied exactly. dst is reused when it has dg.Len() elements.
func Linear(src []float32, sg, dg Grid, dst []float32) ([]float32, error) {
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
		permute(src, sg, dg, m, axis, sign, dst)
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

// Nearest resamples labels src, on grid sg, onto grid dg with nearest
// neighbour; voxels whose nearest source voxel is outside src are 0. dst is
// reused when it has dg.Len() elements.
func Nearest(src []uint8, sg, dg Grid, dst []uint8) ([]uint8, error) {
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
		permute(src, sg, dg, m, axis, sign, dst)
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

// permute copies voxels for a map that only permutes and flips axes: the
// destination's axis t runs along source axis axis[t] with sign sign[t].
func permute[T float32 | uint8](src []T, sg, dg Grid, m indexMap, axis, sign [3]int, dst []T) {
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
