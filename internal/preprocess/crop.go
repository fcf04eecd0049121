package preprocess

// Box is a voxel range [Lo, Hi) along each grid axis.
type Box struct {
	Lo, Hi [3]int
}

// Dims is the box's size.
func (b Box) Dims() [3]int {
	return [3]int{b.Hi[0] - b.Lo[0], b.Hi[1] - b.Lo[1], b.Hi[2] - b.Lo[2]}
}

// Foreground returns the bounding box of the voxels of data (on a grid of
// dims) above threshold, grown by pad voxels on every side within the grid.
// ok is false when no voxel is above threshold.
func Foreground(data []float32, dims [3]int, threshold float32, pad int) (b Box, ok bool) {
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
