package preprocess

import (
	"encoding/binary"

	"github.com/segbridge/segbridge/internal/parallel"
)

// LargestComponent keeps the largest 26-connected component of the non-zero
// labels (all labels together, as one foreground) and sets every other
// voxel to 0, in place; it returns the number of voxels it cleared. Ties go
// to the component found first in memory order.
func LargestComponent(labels []uint8, dims [3]int) int {
	// Components of runs rather than of voxels: a row of a head mask holds
	// a few runs of non-zero voxels, so a union-find over runs touches each
	// voxel once, where a flood fill visits each voxel's 26 neighbours.
	rs := findRuns(labels, dims)
	if len(rs.runs) == 0 {
		return 0
	}
	parent := make([]int32, len(rs.runs))
	for i := range parent {
		parent[i] = int32(i)
	}
	find := func(i int32) int32 {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	union := func(a, b int32) {
		a, b = find(a), find(b)
		if a == b {
			return
		}
		// The smaller index is the root, so a root is its component's
		// first run in memory order.
		if a < b {
			parent[b] = a
		} else {
			parent[a] = b
		}
	}
	n1, n2 := dims[1], dims[2]
	for k := range n2 {
		for j := range n1 {
			row := j + n1*k
			// The rows before this one in memory order that touch it: the
			// row above in the same slice and three in the slice before.
			for _, nb := range [4][2]int{{j - 1, k}, {j - 1, k - 1}, {j, k - 1}, {j + 1, k - 1}} {
				if nb[0] < 0 || nb[0] >= n1 || nb[1] < 0 {
					continue
				}
				rs.touching(row, nb[0]+n1*nb[1], union)
			}
		}
	}
	// Every root is the first run of its component, so the roots in run
	// order are the components in the order a scan of memory finds them.
	root := make([]int32, len(rs.runs))
	size := make([]int, len(rs.runs))
	for i, r := range rs.runs {
		root[i] = find(int32(i))
		size[root[i]] += int(r.end - r.start)
	}
	best, roots := int32(-1), 0
	for i := range rs.runs {
		if root[i] != int32(i) {
			continue
		}
		roots++
		if best < 0 || size[i] > size[best] {
			best = int32(i)
		}
	}
	if roots <= 1 {
		return 0
	}
	n0, cleared := dims[0], 0
	for i, r := range rs.runs {
		if root[i] != best {
			clear(labels[n0*int(r.row)+int(r.start) : n0*int(r.row)+int(r.end)])
			cleared += int(r.end - r.start)
		}
	}
	return cleared
}

// run is a maximal stretch [start, end) of non-zero labels along axis 0 in
// row j + dims[1]*k.
type run struct {
	row, start, end int32
}

// runs lists the runs of a label grid in memory order; first[row] is the
// index of the row's first run, first[row+1] the end of its runs.
type runs struct {
	runs  []run
	first []int32
}

// findRuns lists the runs of non-zero labels, slices in parallel.
func findRuns(labels []uint8, dims [3]int) runs {
	n0, n1, n2 := dims[0], dims[1], dims[2]
	parts := make([][]run, n2)
	parallel.Range(n2, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			var rs []run
			for j := range n1 {
				row := j + n1*k
				line := labels[n0*row : n0*row+n0]
				for i := 0; i < n0; {
					i = skipZeros(line, i)
					if i >= n0 {
						break
					}
					start := i
					i = skipNonZeros(line, i)
					rs = append(rs, run{int32(row), int32(start), int32(i)})
				}
			}
			parts[k] = rs
		}
	})
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	out := runs{runs: make([]run, 0, total), first: make([]int32, n1*n2+1)}
	for _, p := range parts {
		out.runs = append(out.runs, p...)
	}
	next := 0
	for row := range n1 * n2 {
		out.first[row] = int32(next)
		for next < len(out.runs) && int(out.runs[next].row) == row {
			next++
		}
	}
	out.first[n1*n2] = int32(next)
	return out
}

// skipZeros returns the index of the first non-zero byte of line from i
// on (len(line) if none), eight bytes at a time where it can: a label
// grid is mostly long stretches of background and of foreground.
func skipZeros(line []uint8, i int) int {
	for ; i+8 <= len(line); i += 8 {
		if binary.LittleEndian.Uint64(line[i:]) != 0 {
			break
		}
	}
	for i < len(line) && line[i] == 0 {
		i++
	}
	return i
}

// skipNonZeros returns the index of the first zero byte of line from i on
// (len(line) if none).
func skipNonZeros(line []uint8, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(line); i += 8 {
		// A word has a zero byte exactly when this is not 0.
		if w := binary.LittleEndian.Uint64(line[i:]); (w-ones)&^w&highs != 0 {
			break
		}
	}
	for i < len(line) && line[i] != 0 {
		i++
	}
	return i
}

// touching calls join for each pair of runs, one in row a and one in row
// b, that are 26-connected: rows a and b are neighbours, so runs touch when
// their spans, each grown by one voxel, overlap.
func (rs runs) touching(a, b int, join func(x, y int32)) {
	i, iEnd := rs.first[a], rs.first[a+1]
	j, jEnd := rs.first[b], rs.first[b+1]
	for i < iEnd && j < jEnd {
		x, y := rs.runs[i], rs.runs[j]
		if x.start <= y.end && y.start <= x.end {
			join(i, j)
		}
		// Step past the run that ends first; it can touch nothing further.
		if x.end < y.end {
			i++
		} else {
			j++
		}
	}
}
