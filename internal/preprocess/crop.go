package preprocess

import "fmt"

// Box is a voxel range [Lo, Hi) along each grid axis.
type Box struct {
	Lo, Hi [3]int
}

// Voxels is the number of voxels in the box.
func (b Box) Voxels() int {
	d := b.Dims()
	return d[0] * d[1] * d[2]
}

// Dims is the box's size.
func (b Box) Dims() [3]int {
	return [3]int{b.Hi[0] - b.Lo[0], b.Hi[1] - b.Lo[1], b.Hi[2] - b.Lo[2]}
}

// Foreground returns the bounding box of the voxels of data (on a grid of
// dims) above threshold, grown by pad voxels on every side within the grid.
// ok is false when no voxel is above threshold.
func Foreground(data []float32, dims [3]int, threshold float32, pad int) (b Box, ok bool) {
	b, ok = spanBox(data, dims, func(r []float32) (int, int) {
		first := -1
		for i, x := range r {
			if x > threshold {
				first = i
				break
			}
		}
		if first < 0 {
			return -1, -1
		}
		for i := len(r) - 1; i > first; i-- {
			if r[i] > threshold {
				return first, i
			}
		}
		return first, first
	})
	if !ok {
		return Box{}, false
	}
	return b.Grow(pad, dims), true
}

// Grow returns b grown by pad voxels on every side, within a grid of dims.
func (b Box) Grow(pad int, dims [3]int) Box {
	for t := range 3 {
		b.Lo[t] = max(0, b.Lo[t]-pad)
		b.Hi[t] = min(dims[t], b.Hi[t]+pad)
	}
	return b
}

// Contains reports whether o lies within b.
func (b Box) Contains(o Box) bool {
	for t := range 3 {
		if o.Lo[t] < b.Lo[t] || o.Hi[t] > b.Hi[t] {
			return false
		}
	}
	return true
}

// Extract copies the box out of data (on a grid of dims).
func Extract[T any](data []T, dims [3]int, b Box) []T {
	bd := b.Dims()
	out := make([]T, bd[0]*bd[1]*bd[2])
	for k := range bd[2] {
		for j := range bd[1] {
			src := b.Lo[0] + dims[0]*(b.Lo[1]+j+dims[1]*(b.Lo[2]+k))
			copy(out[bd[0]*(j+bd[1]*k):][:bd[0]], data[src:src+bd[0]])
		}
	}
	return out
}

// Paste copies part (the box's contents) into data (on a grid of dims).
func Paste[T any](data []T, dims [3]int, b Box, part []T) {
	bd := b.Dims()
	for k := range bd[2] {
		for j := range bd[1] {
			dst := b.Lo[0] + dims[0]*(b.Lo[1]+j+dims[1]*(b.Lo[2]+k))
			copy(data[dst:dst+bd[0]], part[bd[0]*(j+bd[1]*k):][:bd[0]])
		}
	}
}

// SubGrid is the grid of the box's voxels.
func (g Grid) SubGrid(b Box) Grid {
	out := g
	out.Dims = b.Dims()
	out.Origin = g.Point([3]float64{float64(b.Lo[0]), float64(b.Lo[1]), float64(b.Lo[2])})
	return out
}

// within checks that b is a non-empty part of a grid of dims.
func (b Box) within(dims [3]int) error {
	for t := range 3 {
		if b.Lo[t] < 0 || b.Lo[t] >= b.Hi[t] || b.Hi[t] > dims[t] {
			return fmt.Errorf("box %v..%v is not a non-empty part of a %dx%dx%d grid", b.Lo, b.Hi, dims[0], dims[1], dims[2])
		}
	}
	return nil
}
