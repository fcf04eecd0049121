package preprocess

// LargestComponent keeps the largest 26-connected component of the non-zero
// labels (all labels together, as one foreground) and sets every other
// voxel to 0, in place; it returns the number of voxels it cleared. Ties go
// to the component found first in memory order.
func LargestComponent(labels []uint8, dims [3]int) int {
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
