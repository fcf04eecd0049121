// Package preprocess holds the image operations that make a series look like
// a model's training data and map its labels back: voxel grids in patient
// space, reorientation, resampling and FreeSurfer-style conforming,
// intensity normalisation, cropping to the foreground and connected
// components. It works on plain float32 and uint8 arrays and knows nothing of
// DICOM or ONNX.
package preprocess

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/segbridge/segbridge/internal/checked"
	"github.com/segbridge/segbridge/internal/volume"
)

// MaxGridVoxels is the most voxels a grid may have to be resampled from or
// onto, made by Respace and Conform, or run through a model (Grid.Voxels):
// 2^31-1, so that LargestComponent's int32 voxel indices hold every voxel,
// and 8 GiB of float32, four times the largest volume a worker accepts by
// default. A larger grid comes from a corrupt spacing (a series whose
// PixelSpacing is 1e9 mm, a manifest asking for 1e-9 mm voxels) or from
// limits raised past it, and would otherwise wrap Len or exhaust memory.
const MaxGridVoxels = math.MaxInt32

// ErrGridTooLarge is wrapped by the errors of grids over MaxGridVoxels.
var ErrGridTooLarge = errors.New("grid too large")

// Grid places a voxel array in patient space (LPS, mm), with the conventions
// of volume.Geometry: voxel (a0, a1, a2) sits at Origin + Σ a_t·Spacing[t]·
// Direction[t], and is element a0 + Dims[0]·(a1 + Dims[1]·a2) of the array.
// Seen as a C-order tensor the array is [Dims[2], Dims[1], Dims[0]]: a
// model's [D, H, W] are grid axes 2, 1 and 0.
type Grid struct {
	Dims      [3]int
	Spacing   [3]float64
	Origin    [3]float64
	Direction [3][3]float64
}

// FromGeometry is the grid of a volume: axes i (columns), j (rows), k
// (slices).
func FromGeometry(g volume.Geometry) Grid {
	return Grid{Dims: [3]int{g.Cols, g.Rows, g.Depth}, Spacing: g.Spacing, Origin: g.Origin, Direction: g.Direction}
}

// Len is the number of voxels. It does not check for overflow: Respace,
// Conform, Linear and Nearest refuse grids over MaxGridVoxels.
func (g Grid) Len() int { return g.Dims[0] * g.Dims[1] * g.Dims[2] }

// Voxels returns the number of voxels of g after checking that every
// dimension is positive and the total at most MaxGridVoxels.
func (g Grid) Voxels() (int, error) {
	d := g.Dims
	if d[0] < 1 || d[1] < 1 || d[2] < 1 {
		return 0, fmt.Errorf("grid of %dx%dx%d voxels is empty", d[0], d[1], d[2])
	}
	n, ok := checked.Mul(d[0], d[1], d[2])
	if !ok || n > MaxGridVoxels {
		return 0, fmt.Errorf("%w: %dx%dx%d voxels, more than the %d a grid may hold", ErrGridTooLarge, d[0], d[1], d[2], MaxGridVoxels)
	}
	return n, nil
}

// Point is the patient-space position of a (possibly fractional) voxel index.
func (g Grid) Point(idx [3]float64) [3]float64 {
	p := g.Origin
	for t := range 3 {
		for c := range 3 {
			p[c] += idx[t] * g.Spacing[t] * g.Direction[t][c]
		}
	}
	return p
}

// letter returns the LPS unit vector an orientation letter points to.
func letter(c byte) ([3]float64, error) {
	switch c {
	case 'L':
		return [3]float64{1, 0, 0}, nil
	case 'R':
		return [3]float64{-1, 0, 0}, nil
	case 'P':
		return [3]float64{0, 1, 0}, nil
	case 'A':
		return [3]float64{0, -1, 0}, nil
	case 'S':
		return [3]float64{0, 0, 1}, nil
	case 'I':
		return [3]float64{0, 0, -1}, nil
	}
	return [3]float64{}, fmt.Errorf("%c is not one of L, R, A, P, S, I", c)
}

// axesOf returns the grid-axis directions (axis 0 first) of an orientation
// code that names the tensor axes D, H, W (grid axes 2, 1, 0).
func axesOf(code string) ([3][3]float64, error) {
	var dirs [3][3]float64
	code = strings.ToUpper(code)
	if len(code) != 3 {
		return dirs, fmt.Errorf("orientation %q is not three letters", code)
	}
	for t := range 3 {
		v, err := letter(code[2-t])
		if err != nil {
			return dirs, fmt.Errorf("orientation %q: %w", code, err)
		}
		dirs[t] = v
	}
	for a := range 3 {
		for b := a + 1; b < 3; b++ {
			if dot(dirs[a], dirs[b]) != 0 {
				return dirs, fmt.Errorf("orientation %q names the same axis twice", code)
			}
		}
	}
	return dirs, nil
}

// Orientation returns the letters that D, H and W (grid axes 2, 1, 0) point
// nearest to: an axial DICOM series (i→L, j→P, k→S) read as [Depth, Rows,
// Cols] is "SPL".
func (g Grid) Orientation() string {
	var b [3]byte
	for t := range 3 {
		d := g.Direction[t]
		best, sign := 0, 1.0
		for c := range 3 {
			if math.Abs(d[c]) > math.Abs(d[best]) {
				best = c
			}
		}
		if d[best] < 0 {
			sign = -1
		}
		b[2-t] = map[[2]int]byte{{0, 1}: 'L', {0, -1}: 'R', {1, 1}: 'P', {1, -1}: 'A', {2, 1}: 'S', {2, -1}: 'I'}[[2]int{best, int(sign)}]
	}
	return string(b[:])
}

var perms = [6][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}

// Reorient returns the grid that holds g's voxels permuted and flipped so
// that D, H, W point nearest to the orientation code (e.g. "LIA"): the grid
// axis whose direction is closest to each letter, with no interpolation.
func Reorient(g Grid, code string) (Grid, error) {
	want, err := axesOf(code)
	if err != nil {
		return Grid{}, err
	}
	best, bestScore := perms[0], -1.0
	for _, p := range perms {
		s := 0.0
		for t := range 3 {
			s += math.Abs(dot(g.Direction[p[t]], want[t]))
		}
		if s > bestScore+1e-9 {
			best, bestScore = p, s
		}
	}
	var out Grid
	var corner [3]float64
	for t := range 3 {
		a := best[t]
		out.Dims[t], out.Spacing[t], out.Direction[t] = g.Dims[a], g.Spacing[a], g.Direction[a]
		if dot(g.Direction[a], want[t]) < 0 {
			out.Direction[t] = scale(g.Direction[a], -1)
			corner[a] = float64(g.Dims[a] - 1)
		}
	}
	out.Origin = g.Point(corner)
	return out, nil
}

// Respace returns a grid with the same axes, centre and extent as g and the
// given voxel size along D, H, W (grid axes 2, 1, 0); each axis gets
// round(extent/size) voxels, at least 1. A grid over MaxGridVoxels is an
// error wrapping ErrGridTooLarge.
func Respace(g Grid, spacingDHW [3]float64) (Grid, error) {
	out := g
	var centre [3]float64
	for t := range 3 {
		centre[t] = float64(g.Dims[t]-1) / 2
		s := spacingDHW[2-t]
		if !(s > 0) {
			return Grid{}, fmt.Errorf("spacing %v is not positive", s)
		}
		out.Spacing[t] = s
		// Checked as a float first: converting one beyond int's range to
		// an int gives an arbitrary value.
		n := math.Round(float64(g.Dims[t]) * g.Spacing[t] / s)
		if !(n <= MaxGridVoxels) {
			return Grid{}, fmt.Errorf("%w: resampling %d voxels of %g mm to %g mm gives %g voxels along one axis, more than the %d a grid may hold",
				ErrGridTooLarge, g.Dims[t], g.Spacing[t], s, n, MaxGridVoxels)
		}
		out.Dims[t] = max(1, int(n))
	}
	if _, err := out.Voxels(); err != nil {
		return Grid{}, fmt.Errorf("resampling %dx%dx%d voxels of %gx%gx%g mm to %gx%gx%g mm: %w",
			g.Dims[0], g.Dims[1], g.Dims[2], g.Spacing[0], g.Spacing[1], g.Spacing[2],
			out.Spacing[0], out.Spacing[1], out.Spacing[2], err)
	}
	c := g.Point(centre)
	out.Origin = c
	for t := range 3 {
		out.Origin = add(out.Origin, scale(out.Direction[t], -float64(out.Dims[t]-1)/2*out.Spacing[t]))
	}
	return out, nil
}

// Conform returns FreeSurfer's conformed grid for g: size³ voxels of voxel
// mm, D, H, W along the orientation code (FreeSurfer's is LIA) exactly, and
// voxel (size/2, size/2, size/2) on g's voxel (Dims/2), FreeSurfer's c_ras.
func Conform(g Grid, size int, voxel float64, code string) (Grid, error) {
	dirs, err := axesOf(code)
	if err != nil {
		return Grid{}, err
	}
	if size < 1 || !(voxel > 0) {
		return Grid{}, fmt.Errorf("conform: size %d and voxel size %v must be positive", size, voxel)
	}
	if n, ok := checked.Mul(size, size, size); !ok || n > MaxGridVoxels {
		return Grid{}, fmt.Errorf("%w: conform: %d³ voxels, more than the %d a grid may hold", ErrGridTooLarge, size, MaxGridVoxels)
	}
	c := g.Point([3]float64{float64(g.Dims[0]) / 2, float64(g.Dims[1]) / 2, float64(g.Dims[2]) / 2})
	out := Grid{Dims: [3]int{size, size, size}, Spacing: [3]float64{voxel, voxel, voxel}, Direction: dirs}
	half := float64(size / 2)
	out.Origin = c
	for t := range 3 {
		out.Origin = add(out.Origin, scale(dirs[t], -half*voxel))
	}
	return out, nil
}

// indexMap is the affine map from a destination grid's voxel index to a
// source grid's fractional voxel index: s = M·d + B.
type indexMap struct {
	M [3][3]float64 // M[a][t]: source axis a per destination axis t
	B [3]float64
}

func newIndexMap(src, dst Grid) (indexMap, error) {
	// Columns of A are the source's voxel steps in patient space.
	var a [3][3]float64
	for t := range 3 {
		for c := range 3 {
			a[c][t] = src.Direction[t][c] * src.Spacing[t]
		}
	}
	inv, ok := invert(a)
	if !ok {
		return indexMap{}, errors.New("source grid directions are degenerate")
	}
	var m indexMap
	for t := range 3 {
		step := scale(dst.Direction[t], dst.Spacing[t])
		col := mulVec(inv, step)
		for s := range 3 {
			m.M[s][t] = col[s]
		}
	}
	m.B = mulVec(inv, sub(dst.Origin, src.Origin))
	return m, nil
}

// aligned reports whether every step of the map is -1, 0 or 1 and every
// offset a whole or half voxel, not too far out for float64 to hold
// exactly: then a destination index maps to an exact source coordinate.
func (m indexMap) aligned() bool {
	for s := range 3 {
		for t := range 3 {
			if v := m.M[s][t]; v != 0 && v != 1 && v != -1 {
				return false
			}
		}
		b := m.B[s]
		if f := b - math.Floor(b); !(f == 0 || f == 0.5) || !(math.Abs(b) < 1<<40) {
			return false
		}
	}
	return true
}

// permutation reports whether the map only permutes and flips whole voxels,
// and if so, for each destination axis the source axis, its sign and offset.
func (m indexMap) permutation() (axis [3]int, sign [3]int, ok bool) {
	const eps = 1e-6
	used := [3]bool{}
	for t := range 3 {
		found := false
		for s := range 3 {
			v := m.M[s][t]
			switch {
			case math.Abs(v) < eps:
			case math.Abs(math.Abs(v)-1) < eps && !found && !used[s]:
				axis[t], sign[t], found, used[s] = s, int(math.Round(v)), true, true
			default:
				return axis, sign, false
			}
		}
		if !found {
			return axis, sign, false
		}
	}
	for s := range 3 {
		if math.Abs(m.B[s]-math.Round(m.B[s])) > eps {
			return axis, sign, false
		}
	}
	return axis, sign, true
}

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func add(a, b [3]float64) [3]float64 {
	return [3]float64{a[0] + b[0], a[1] + b[1], a[2] + b[2]}
}
func sub(a, b [3]float64) [3]float64 {
	return [3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]}
}
func scale(a [3]float64, f float64) [3]float64 { return [3]float64{a[0] * f, a[1] * f, a[2] * f} }

func mulVec(m [3][3]float64, v [3]float64) [3]float64 {
	return [3]float64{dot(m[0], v), dot(m[1], v), dot(m[2], v)}
}

func invert(m [3][3]float64) ([3][3]float64, bool) {
	det := m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) -
		m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) +
		m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
	if math.Abs(det) < 1e-12 || math.IsNaN(det) {
		return m, false
	}
	var r [3][3]float64
	r[0][0] = (m[1][1]*m[2][2] - m[1][2]*m[2][1]) / det
	r[0][1] = (m[0][2]*m[2][1] - m[0][1]*m[2][2]) / det
	r[0][2] = (m[0][1]*m[1][2] - m[0][2]*m[1][1]) / det
	r[1][0] = (m[1][2]*m[2][0] - m[1][0]*m[2][2]) / det
	r[1][1] = (m[0][0]*m[2][2] - m[0][2]*m[2][0]) / det
	r[1][2] = (m[0][2]*m[1][0] - m[0][0]*m[1][2]) / det
	r[2][0] = (m[1][0]*m[2][1] - m[1][1]*m[2][0]) / det
	r[2][1] = (m[0][1]*m[2][0] - m[0][0]*m[2][1]) / det
	r[2][2] = (m[0][0]*m[1][1] - m[0][1]*m[1][0]) / det
	return r, true
}
