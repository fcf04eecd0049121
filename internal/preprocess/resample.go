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
	if _, err := dg.Voxels(); err != nil {
		return nil, fmt.Errorf("resample onto: %w", err)
	}
	return LinearBox(src, sg, dg, Box{Hi: dg.Dims}, dst)
}

// LinearBox is Linear computed only for the voxels of box, a part of dg:
// it returns them in the box's own order (Box.Dims), each exactly the value
// Linear gives that voxel. dst is reused when it has as many elements as
// the box has voxels.
func LinearBox(src []float32, sg, dg Grid, box Box, dst []float32) ([]float32, error) {
	s, err := newSampler(src, sg, dg, box)
	if err != nil {
		return nil, err
	}
	bd := box.Dims()
	if n := bd[0] * bd[1] * bd[2]; len(dst) != n {
		dst = make([]float32, n)
	}
	s.rows(box, func(b, c int, _ []float32) []float32 {
		o := bd[0] * (b + bd[1]*c)
		return dst[o : o+bd[0]]
	}, nil)
	return dst, nil
}

// LinearScale255Box is LinearBox followed by Scale255(lo, hi), kept as
// uint8: FreeSurfer's conformed values are whole numbers 0..255, so a
// quarter of the memory holds them exactly, and no float32 copy of the grid
// is made. Every value equals uint8(Scale255 of Linear's value) provided the
// samples are finite, which they are for src within Finite's bounds.
func LinearScale255Box(src []float32, sg, dg Grid, box Box, lo, hi float64) ([]uint8, error) {
	s, err := newSampler(src, sg, dg, box)
	if err != nil {
		return nil, err
	}
	bd := box.Dims()
	out := make([]uint8, bd[0]*bd[1]*bd[2])
	k := scale255Factor(lo, hi)
	s.rows(box, func(_, _ int, scratch []float32) []float32 { return scratch }, func(b, c int, row []float32) {
		o := out[bd[0]*(b+bd[1]*c):][:bd[0]]
		for i, v := range row {
			o[i] = scale255(v, lo, k)
		}
	})
	return out, nil
}

// sampler computes Linear's values one row (along destination axis 0) at a
// time, with the same floating-point operations in the same order, so that
// a box of the grid gets exactly the values of the whole.
type sampler struct {
	src []float32
	n   [3]int
	lim [3]float64
	m   indexMap
	// s0, s1, s2 are the steps to the neighbour along each source axis; 0
	// along an axis of one voxel.
	s0, s1, s2 int

	// perm is set when the map only permutes and flips whole voxels; then
	// the values are copied.
	perm       bool
	axis, sign [3]int
	off        [3]int
	stride     [3]int

	// aligned is set when the map steps whole source voxels per
	// destination voxel and starts on whole or half ones (a 1 mm series
	// conformed to 1 mm, axes permuted): then every coordinate is exact,
	// the fractions stay the same along a row and the source index steps
	// evenly, so a row needs no coordinate arithmetic per voxel.
	aligned bool
}

func newSampler(src []float32, sg, dg Grid, box Box) (*sampler, error) {
	sn, err := sg.Voxels()
	if err != nil {
		return nil, fmt.Errorf("resample from: %w", err)
	}
	if len(src) != sn {
		return nil, fmt.Errorf("resample: %d values for a grid of %d voxels", len(src), sn)
	}
	if _, err := dg.Voxels(); err != nil {
		return nil, fmt.Errorf("resample onto: %w", err)
	}
	if err := box.within(dg.Dims); err != nil {
		return nil, fmt.Errorf("resample: %w", err)
	}
	m, err := newIndexMap(sg, dg)
	if err != nil {
		return nil, err
	}
	s := &sampler{src: src, n: sg.Dims, m: m, s0: 1, s1: sg.Dims[0], s2: sg.Dims[0] * sg.Dims[1]}
	for t := range 3 {
		s.lim[t] = float64(sg.Dims[t] - 1)
	}
	if sg.Dims[0] == 1 {
		s.s0 = 0
	}
	if sg.Dims[1] == 1 {
		s.s1 = 0
	}
	if sg.Dims[2] == 1 {
		s.s2 = 0
	}
	if axis, sign, ok := m.permutation(); ok {
		s.perm, s.axis, s.sign = true, axis, sign
		s.stride = [3]int{1, sg.Dims[0], sg.Dims[0] * sg.Dims[1]}
		s.off = [3]int{int(math.Round(m.B[0])), int(math.Round(m.B[1])), int(math.Round(m.B[2]))}
	}
	s.aligned = m.aligned()
	return s, nil
}

// rows samples every row of box (b, c relative to the box), over the CPUs:
// into is where row (b, c) goes, given a scratch row of the box's width,
// and done, when set, is called with it once filled.
func (s *sampler) rows(box Box, into func(b, c int, scratch []float32) []float32, done func(b, c int, row []float32)) {
	bd := box.Dims()
	one := func(scratch []float32, b, c int) {
		row := into(b, c, scratch)
		s.row(box.Lo[0], box.Lo[1]+b, box.Lo[2]+c, row)
		if done != nil {
			done(b, c, row)
		}
	}
	parallel.Range(bd[2], func(lo, hi int) {
		scratch := make([]float32, bd[0])
		for c := lo; c < hi; c++ {
			for b := range bd[1] {
				one(scratch, b, c)
			}
		}
	})
}

// row fills out with the samples at destination voxels (a0+i, b, c).
func (s *sampler) row(a0, b, c int, out []float32) {
	if s.perm {
		permuteRow(s.src, s.n, s.stride, s.off, s.axis, s.sign, a0, b, c, out)
		return
	}
	m, src := &s.m, s.src
	// As Linear always computed them: the part of each source coordinate
	// that the row shares, then the step along the row.
	var base [3]float64
	for t := range 3 {
		base[t] = m.M[t][1]*float64(b) + m.M[t][2]*float64(c) + m.B[t]
	}
	m0, m1, m2 := m.M[0][0], m.M[1][0], m.M[2][0]
	n0, n1 := s.n[0], s.n[1]
	s0, s1, s2 := s.s0, s.s1, s.s2
	// Along the row each coordinate is monotone in the voxel's index, so
	// the voxels strictly inside the source on every axis, where no
	// clamping or edge test changes anything, are one stretch [from, to).
	from, to := 0, len(out)
	for t, mt := range [3]float64{m0, m1, m2} {
		f, e := strictlyInside(base[t], mt, s.lim[t], a0, len(out))
		from, to = max(from, f), min(to, e)
	}
	to = max(from, to)
	if s.aligned && from < to {
		// The first voxel as below; the others step from it exactly.
		fa := float64(a0 + from)
		x0, x1, x2 := base[0]+m0*fa, base[1]+m1*fa, base[2]+m2*fa
		i0, i1, i2 := int(x0), int(x1), int(x2)
		f0, f1, f2 := float32(x0-float64(i0)), float32(x1-float64(i1)), float32(x2-float64(i2))
		g0, g1, g2 := 1-f0, 1-f1, 1-f2
		p := i0 + n0*(i1+n1*i2)
		dp := int(m0) + n0*(int(m1)+n1*int(m2))
		for i := from; i < to; i, p = i+1, p+dp {
			c00 := src[p]*g0 + src[p+s0]*f0
			c10 := src[p+s1]*g0 + src[p+s1+s0]*f0
			c01 := src[p+s2]*g0 + src[p+s2+s0]*f0
			c11 := src[p+s2+s1]*g0 + src[p+s2+s1+s0]*f0
			c0 := c00*g1 + c10*f1
			c1 := c01*g1 + c11*f1
			out[i] = c0*g2 + c1*f2
		}
		s.edgeRow(base, 0, from, a0, out)
		s.edgeRow(base, to, len(out), a0, out)
		return
	}
	fa := float64(a0 + from) // float64(a0+i), counted: exact below 2^53
	for i := from; i < to; i, fa = i+1, fa+1 {
		x0 := base[0] + m0*fa
		x1 := base[1] + m1*fa
		x2 := base[2] + m2*fa
		i0, i1, i2 := int(x0), int(x1), int(x2)
		f0, f1, f2 := float32(x0-float64(i0)), float32(x1-float64(i1)), float32(x2-float64(i2))
		p := i0 + n0*(i1+n1*i2)
		c00 := src[p]*(1-f0) + src[p+s0]*f0
		c10 := src[p+s1]*(1-f0) + src[p+s1+s0]*f0
		c01 := src[p+s2]*(1-f0) + src[p+s2+s0]*f0
		c11 := src[p+s2+s1]*(1-f0) + src[p+s2+s1+s0]*f0
		c0 := c00*(1-f1) + c10*f1
		c1 := c01*(1-f1) + c11*f1
		out[i] = c0*(1-f2) + c1*f2
	}
	s.edgeRow(base, 0, from, a0, out)
	s.edgeRow(base, to, len(out), a0, out)
}

// edgeRow fills out[from:to] of the row of base, whose voxels may lie
// outside the source or on its edge: the general case of row.
func (s *sampler) edgeRow(base [3]float64, from, to, a0 int, out []float32) {
	m0, m1, m2 := s.m.M[0][0], s.m.M[1][0], s.m.M[2][0]
	l0, l1, l2 := s.lim[0], s.lim[1], s.lim[2]
	n0, n1 := s.n[0], s.n[1]
	s0, s1, s2 := s.s0, s.s1, s.s2
	src := s.src
	for i := from; i < to; i++ {
		fa := float64(a0 + i)
		x0 := base[0] + m0*fa
		x1 := base[1] + m1*fa
		x2 := base[2] + m2*fa
		if x0 < -edge || x0 > l0+edge || x1 < -edge || x1 > l1+edge || x2 < -edge || x2 > l2+edge {
			out[i] = 0
			continue
		}
		i0, f0 := cell(x0, l0)
		i1, f1 := cell(x1, l1)
		i2, f2 := cell(x2, l2)
		p := i0 + n0*(i1+n1*i2)
		c00 := src[p]*(1-f0) + src[p+s0]*f0
		c10 := src[p+s1]*(1-f0) + src[p+s1+s0]*f0
		c01 := src[p+s2]*(1-f0) + src[p+s2+s0]*f0
		c11 := src[p+s2+s1]*(1-f0) + src[p+s2+s1+s0]*f0
		c0 := c00*(1-f1) + c10*f1
		c1 := c01*(1-f1) + c11*f1
		out[i] = c0*(1-f2) + c1*f2
	}
}

// strictlyInside returns the stretch [from, to) of i in [0, n) for which
// x = base + m*float64(a0+i), computed as the sampler computes it, lies in
// (0, lim).
func strictlyInside(base, m, lim float64, a0, n int) (from, to int) {
	x := func(i int) float64 { return base + m*float64(a0+i) }
	return monotoneStretch(n, m, func(i int) bool { return x(i) > 0 }, func(i int) bool { return x(i) < lim })
}

// cell returns the lower voxel of the interpolation cell of coordinate x
// (within [-edge, lim+edge]) and the fraction towards the upper one.
func cell(x, lim float64) (int, float32) {
	x = min(max(x, 0), lim)
	i := int(x)
	if float64(i) == lim && i > 0 {
		i--
	}
	return i, float32(x - float64(i))
}

// permuteRow copies the row (a0+i, b, c) of a map that only permutes and
// flips axes: destination axis t runs along source axis axis[t] with sign
// sign[t], from off.
func permuteRow[T float32 | uint8](src []T, n, stride, off, axis, sign [3]int, a0, b, c int, out []T) {
	// The source index of the row's voxel i is p0 + i*step, inside while
	// each source coordinate is.
	p0, inside := 0, true
	for t, d := range [3]int{a0, b, c} {
		s := axis[t]
		j := off[s] + sign[t]*d
		if t > 0 && (j < 0 || j >= n[s]) {
			inside = false
		}
		p0 += j * stride[s]
	}
	if !inside {
		clear(out)
		return
	}
	s := axis[0]
	j0, dj := off[s]+sign[0]*a0, sign[0]
	step := dj * stride[s]
	for i := range out {
		if j := j0 + dj*i; j < 0 || j >= n[s] {
			out[i] = 0
			continue
		}
		out[i] = src[p0+i*step]
	}
}

// Nearest resamples labels src, on grid sg, onto grid dg with nearest
// neighbour; voxels whose nearest source voxel is outside src are 0. dst is
// reused when it has dg.Len() elements.
func Nearest(src []uint8, sg, dg Grid, dst []uint8) ([]uint8, error) {
	if _, err := sg.Voxels(); err != nil {
		return nil, fmt.Errorf("resample from: %w", err)
	}
	return NearestFromBox(src, sg, Box{Hi: sg.Dims}, dg, dst)
}

// NearestFromBox is Nearest for labels known only on box, a part of sg,
// and 0 elsewhere: src holds the box's labels in its own order. Each voxel
// of dg gets exactly what Nearest would give it from the whole grid, but
// neither the whole grid nor its labels are ever made.
func NearestFromBox(src []uint8, sg Grid, box Box, dg Grid, dst []uint8) ([]uint8, error) {
	if _, err := sg.Voxels(); err != nil {
		return nil, fmt.Errorf("resample from: %w", err)
	}
	if err := box.within(sg.Dims); err != nil {
		return nil, fmt.Errorf("resample: %w", err)
	}
	bd := box.Dims()
	if len(src) != bd[0]*bd[1]*bd[2] {
		return nil, fmt.Errorf("resample: %d labels for a box of %d voxels", len(src), bd[0]*bd[1]*bd[2])
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
	d0, d1 := dg.Dims[0], dg.Dims[1]
	aligned := m.aligned()
	if axis, sign, ok := m.permutation(); ok {
		// The box's own indices: the whole grid's, less the box's corner.
		off := [3]int{int(math.Round(m.B[0])) - box.Lo[0], int(math.Round(m.B[1])) - box.Lo[1], int(math.Round(m.B[2])) - box.Lo[2]}
		stride := [3]int{1, bd[0], bd[0] * bd[1]}
		parallel.Range(dg.Dims[2], func(lo, hi int) {
			for c := lo; c < hi; c++ {
				for b := range d1 {
					o := d0 * (b + d1*c)
					permuteRow(src, bd, stride, off, axis, sign, 0, b, c, dst[o:o+d0])
				}
			}
		})
		return dst, nil
	}
	parallel.Range(dg.Dims[2], func(lo, hi int) {
		for c := lo; c < hi; c++ {
			for b := range d1 {
				row := dst[d0*(b+d1*c) : d0*(b+d1*c)+d0]
				var base [3]float64
				for s := range 3 {
					base[s] = m.M[s][1]*float64(b) + m.M[s][2]*float64(c) + m.B[s]
				}
				// Round half up, as floor(x + 0.5), on the whole grid's
				// index, then into the box. Each index is monotone along
				// the row: the voxels inside the box are one stretch, where
				// x + 0.5 >= 0 and floor is truncation.
				index := func(s, a int) int {
					return int(math.Floor(base[s]+m.M[s][0]*float64(a)+0.5)) - box.Lo[s]
				}
				from, to := 0, d0
				for s := range 3 {
					f, e := monotoneStretch(d0, m.M[s][0], func(a int) bool { return index(s, a) >= 0 }, func(a int) bool { return index(s, a) < bd[s] })
					from, to = max(from, f), min(to, e)
				}
				to = max(from, to)
				clear(row[:from])
				clear(row[to:])
				m0, m1, m2 := m.M[0][0], m.M[1][0], m.M[2][0]
				if aligned && from < to {
					// Exact coordinates: the index steps evenly from the
					// first voxel's.
					p := index(0, from) + bd[0]*(index(1, from)+bd[1]*index(2, from))
					dp := int(m0) + bd[0]*(int(m1)+bd[1]*int(m2))
					for a := from; a < to; a, p = a+1, p+dp {
						row[a] = src[p]
					}
					continue
				}
				l0, l1, l2 := box.Lo[0], box.Lo[1], box.Lo[2]
				for a := from; a < to; a++ {
					fa := float64(a)
					i0 := int(base[0]+m0*fa+0.5) - l0
					i1 := int(base[1]+m1*fa+0.5) - l1
					i2 := int(base[2]+m2*fa+0.5) - l2
					row[a] = src[i0+bd[0]*(i1+bd[1]*i2)]
				}
			}
		}
	})
	return dst, nil
}

// monotoneStretch returns the stretch [from, to) of i in [0, n) where lo(i)
// and hi(i) both hold, for predicates of a coordinate that moves along i by
// step per voxel (monotone, so binary searches find where each changes):
// lo bounds it from below, hi from above.
func monotoneStretch(n int, step float64, lo, hi func(int) bool) (from, to int) {
	first := func(pred func(int) bool) int { // first i with pred, pred rising
		a, b := 0, n
		for a < b {
			mid := int(uint(a+b) >> 1)
			if pred(mid) {
				b = mid
			} else {
				a = mid + 1
			}
		}
		return a
	}
	not := func(pred func(int) bool) func(int) bool { return func(i int) bool { return !pred(i) } }
	switch {
	case step > 0:
		from, to = first(lo), first(not(hi))
	case step < 0:
		from, to = first(hi), first(not(lo))
	case lo(0) && hi(0):
		return 0, n
	default:
		return 0, 0
	}
	return from, max(from, to)
}

// CandidateBox bounds where Linear's samples of src onto dg can reach
// above, from src alone, given that above > 0 (so that the 0 of samples
// outside src does not reach it) and that big is at least the largest
// magnitude in src (from Range), which bounds float32 rounding in a mean. A sample is a weighted mean of at most 8
// neighbouring source values, so it can reach above only near a source
// voxel that (allowing for float32 rounding in the mean) does; CandidateBox
// returns the box of dg holding every voxel near such a source voxel, and
// ok false when there is none. No sample outside the box reaches above.
func CandidateBox(src []float32, sg, dg Grid, above float32, big float64) (b Box, ok bool, err error) {
	sn, err := sg.Voxels()
	if err != nil {
		return Box{}, false, fmt.Errorf("resample from: %w", err)
	}
	if len(src) != sn {
		return Box{}, false, fmt.Errorf("resample: %d values for a grid of %d voxels", len(src), sn)
	}
	if _, err := dg.Voxels(); err != nil {
		return Box{}, false, fmt.Errorf("resample onto: %w", err)
	}
	if !(above > 0) {
		return Box{}, false, fmt.Errorf("resample: candidates above %v include the outside", above)
	}
	m, err := newIndexMap(sg, dg)
	if err != nil {
		return Box{}, false, err
	}
	// The mean of values up to M in magnitude, in float32, can exceed its
	// largest term by a few units in the last place of M; 2^-16 M is far
	// more than that, and a cut lowered by twice it takes in any rounding
	// of the subtraction.
	margin := float32(big / (1 << 16))
	cut := above - 2*margin
	sb, ok := spanBox(src, sg.Dims, func(r []float32) (int, int) {
		first := -1
		for i, x := range r {
			if x >= cut {
				first = i
				break
			}
		}
		if first < 0 {
			return -1, -1
		}
		for i := len(r) - 1; i > first; i-- {
			if r[i] >= cut {
				return first, i
			}
		}
		return first, first
	})
	if !ok {
		return Box{}, false, nil
	}
	// Voxels of dg whose source coordinates all lie within one voxel of
	// sb: the corners of that range, mapped into dg, bound them.
	inv, ok := invertMap(m)
	if !ok {
		return Box{Hi: dg.Dims}, true, nil
	}
	lo := [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)}
	hi := [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
	for corner := range 8 {
		var s [3]float64
		for t := range 3 {
			s[t] = float64(sb.Lo[t]) - 1 - edge
			if corner&(1<<t) != 0 {
				s[t] = float64(sb.Hi[t]-1) + 1 + edge
			}
		}
		d := inv.apply(s)
		for t := range 3 {
			lo[t], hi[t] = min(lo[t], d[t]), max(hi[t], d[t])
		}
	}
	for t := range 3 {
		// One voxel more on each side for the rounding of the map itself.
		l, h := math.Floor(lo[t])-1, math.Ceil(hi[t])+2
		if !(l < float64(dg.Dims[t])) || !(h > 0) {
			return Box{}, false, nil
		}
		b.Lo[t] = int(max(l, 0))
		b.Hi[t] = int(min(h, float64(dg.Dims[t])))
	}
	return b, true, nil
}

// spanBox is the bounding box of the voxels of data (on a grid of dims)
// that span picks, given each row.
func spanBox[T any](data []T, dims [3]int, span func(row []T) (first, last int)) (Box, bool) {
	return BoxWhere(dims, func(row int) (int, int) { return span(data[dims[0]*row:][:dims[0]]) })
}

// BoxWhere is the bounding box of the voxels of a grid of dims picked by
// span, which gives the first and last picked voxel of row j + dims[1]*k
// (-1 when none), computed over the CPUs.
func BoxWhere(dims [3]int, span func(row int) (first, last int)) (Box, bool) {
	type part struct {
		b  Box
		ok bool
	}
	parts := make([]part, dims[2])
	parallel.Range(dims[2], func(lo, hi int) {
		for k := lo; k < hi; k++ {
			p := part{b: Box{Lo: dims}}
			for j := range dims[1] {
				first, last := span(j + dims[1]*k)
				if first < 0 {
					continue
				}
				p.ok = true
				p.b.Lo = [3]int{min(p.b.Lo[0], first), min(p.b.Lo[1], j), k}
				p.b.Hi = [3]int{max(p.b.Hi[0], last+1), max(p.b.Hi[1], j+1), k + 1}
			}
			parts[k] = p
		}
	})
	out := Box{Lo: dims}
	ok := false
	for _, p := range parts {
		if !p.ok {
			continue
		}
		ok = true
		for t := range 3 {
			out.Lo[t] = min(out.Lo[t], p.b.Lo[t])
			out.Hi[t] = max(out.Hi[t], p.b.Hi[t])
		}
	}
	if !ok {
		return Box{}, false
	}
	return out, true
}

// affine is x → A·x + C.
type affine struct {
	A [3][3]float64
	C [3]float64
}

func (f affine) apply(x [3]float64) [3]float64 {
	return add(mulVec(f.A, x), f.C)
}

// invertMap returns the map from source to destination voxel index.
func invertMap(m indexMap) (affine, bool) {
	inv, ok := invert(m.M)
	if !ok {
		return affine{}, false
	}
	c := mulVec(inv, m.B)
	return affine{A: inv, C: scale(c, -1)}, true
}

// scale255Factor is Scale255's factor for [lo, hi].
func scale255Factor(lo, hi float64) float64 {
	if hi > lo {
		return 255 / (hi - lo)
	}
	return 1
}

// Scale255Value is what Scale255(lo, hi) makes of the finite value v.
func Scale255Value(v float32, lo, hi float64) uint8 {
	return scale255(v, lo, scale255Factor(lo, hi))
}

// Scale255Threshold is the smallest finite float32 that Scale255(lo, hi)
// maps to at least s, or +Inf when none does.
func Scale255Threshold(lo, hi float64, s uint8) float32 {
	k := scale255Factor(lo, hi)
	reaches := func(key uint32) bool { return scale255(fromSortKey(key), lo, k) >= s }
	a, b := sortKey(-math.MaxFloat32), sortKey(math.MaxFloat32)
	if !reaches(b) {
		return float32(math.Inf(1))
	}
	if reaches(a) {
		return -math.MaxFloat32
	}
	// reaches(a) is false and reaches(b) true; Scale255 is monotone.
	for b-a > 1 {
		mid := a + (b-a)/2
		if reaches(mid) {
			b = mid
		} else {
			a = mid
		}
	}
	return fromSortKey(b)
}

// scale255 is Scale255 of one finite value with Scale255's factor k.
func scale255(v float32, lo, k float64) uint8 {
	y := (float64(v) - lo) * k
	// As min(max(y, 0), 255) for a finite y; a -0 left here rounds to the
	// same 0.
	if y < 0 {
		y = 0
	} else if y > 255 {
		y = 255
	}
	// Adding and taking away 2^52 rounds a float64 below 2^52 to a whole
	// number, half to even, as math.RoundToEven does, in two instructions.
	return uint8((y + 0x1p52) - 0x1p52)
}

// Finite reports whether lo and hi, the range of some data (from Range),
// are finite and below 2^100 in magnitude, so that trilinear means of the
// data are finite too.
func Finite(lo, hi float64) bool {
	const limit = 1 << 100
	return lo > -limit && hi < limit
}
