package preprocess

import (
	"math"
	"slices"
	"sync"

	"github.com/segbridge/segbridge/internal/parallel"
)

// MinMax maps data's minimum to 0 and maximum to 1, in place. A constant
// volume (or one of NaNs only) becomes all 0.
func MinMax(data []float32) {
	lo, hi := Range(data)
	Window(data, lo, hi, false)
}

// Range returns the smallest and largest value of data, NaN if any is NaN
// (as the min and max built-ins give), +Inf and -Inf when data is empty.
func Range(data []float32) (lo, hi float64) {
	var mu sync.Mutex
	lo, hi = math.Inf(1), math.Inf(-1)
	parallel.Range(len(data), func(a, b int) {
		l, h := rangeOf(data[a:b])
		mu.Lock()
		lo, hi = min(lo, l), max(hi, h)
		mu.Unlock()
	})
	return lo, hi
}

// rangeOf is what min and max over data give, NaN and signed zeros
// included, with plain comparisons: the built-ins' care for NaN and -0 on
// every value made them a quarter of the time a conform took.
func rangeOf(data []float32) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	var nan, negZero, posZero bool
	for _, x := range data {
		f := float64(x)
		if f < lo {
			lo = f
		}
		if f > hi {
			hi = f
		}
		b := math.Float32bits(x)
		nan = nan || f != f
		negZero = negZero || b == 1<<31
		posZero = posZero || b == 0
	}
	return fixRange(lo, hi, nan, negZero, posZero)
}

// fixRange gives a range found by plain comparisons the built-ins'
// answers: NaN if any value was NaN, and, where the extreme is a zero, -0
// as the minimum if a -0 was seen and +0 as the maximum if a +0 was.
func fixRange(lo, hi float64, nan, negZero, posZero bool) (float64, float64) {
	if nan {
		return math.NaN(), math.NaN()
	}
	if lo == 0 {
		lo = 0
		if negZero {
			lo = math.Copysign(0, -1)
		}
	}
	if hi == 0 {
		hi = math.Copysign(0, -1)
		if posZero {
			hi = 0
		}
	}
	return lo, hi
}

// Window maps [lo, hi] to [0, 1] in place, clipping outside it when clip is
// set. If hi <= lo every value becomes 0.
func Window(data []float32, lo, hi float64, clip bool) {
	WindowInto(data, data, lo, hi, clip)
}

// WindowInto is Window writing into dst (as long as src) instead of in
// place, so that a copy and its scaling take one pass.
func WindowInto(dst, src []float32, lo, hi float64, clip bool) {
	dst = dst[:len(src)]
	if !(hi > lo) {
		clear(dst)
		return
	}
	s := 1 / (hi - lo)
	parallel.Range(len(src), func(a, b int) {
		for i := a; i < b; i++ {
			y := (float64(src[i]) - lo) * s
			if clip {
				y = min(max(y, 0), 1)
			}
			dst[i] = float32(y)
		}
	})
}

// WindowTable is Window for the whole numbers 0..255: entry v is the value
// Window(lo, hi, clip) gives v.
func WindowTable(lo, hi float64, clip bool) *[256]float32 {
	var t [256]float32
	for v := range t {
		t[v] = float32(v)
	}
	Window(t[:], lo, hi, clip)
	return &t
}

// Percentile maps the lower and upper percentiles (0..100) of data to 0 and
// 1, in place, clipping to [0, 1] when clip is set.
func Percentile(data []float32, lower, upper float64, clip bool) {
	q := Quantiles(data, lower/100, upper/100)
	Window(data, q[0], q[1], clip)
}

// ZScore subtracts the mean and divides by the standard deviation, in place.
// With foreground, both are taken over the non-zero voxels and zero voxels
// stay 0. A constant volume becomes 0.
func ZScore(data []float32, foreground bool) {
	var n int
	var sum, sum2 float64
	for _, x := range data {
		if foreground && x == 0 {
			continue
		}
		n++
		sum += float64(x)
	}
	if n == 0 {
		clear(data)
		return
	}
	mean := sum / float64(n)
	for _, x := range data {
		if foreground && x == 0 {
			continue
		}
		d := float64(x) - mean
		sum2 += d * d
	}
	sd := math.Sqrt(sum2 / float64(n))
	parallel.Range(len(data), func(a, b int) {
		for i := a; i < b; i++ {
			switch {
			case foreground && data[i] == 0:
			case !(sd > 0):
				data[i] = 0
			default:
				data[i] = float32((float64(data[i]) - mean) / sd)
			}
		}
	})
}

// RobustRange is FreeSurfer's conform intensity range: the minimum of data
// and the upper percentile (0..100, FreeSurfer's 99.9) of its non-zero
// voxels, interpolated linearly between order statistics as numpy's
// quantile does.
func RobustRange(data []float32, upper float64) (lo, hi float64) {
	// A selection by radix: two passes over data and no copy of it, where
	// sorting or quickselect would copy the non-zero voxels (most of a head)
	// and reorder them.
	var mu sync.Mutex
	lo = math.Inf(1)
	hist := make([]uint64, 1<<16)
	count := 0
	parallel.Range(len(data), func(a, b int) {
		// The minimum as rangeOf finds it, in the same pass.
		l, n := math.Inf(1), 0
		var nan, negZero bool
		h := new([1 << 16]uint32)
		for _, x := range data[a:b] {
			f := float64(x)
			if f < l {
				l = f
			}
			nan = nan || f != f
			negZero = negZero || math.Float32bits(x) == 1<<31
			if nonZero(x) {
				n++
				h[uint16(sortKey(x)>>16)]++
			}
		}
		l, _ = fixRange(l, 0, nan, negZero, false)
		mu.Lock()
		lo, count = min(lo, l), count+n
		for i, c := range h {
			hist[i] += uint64(c)
		}
		mu.Unlock()
	})
	if count == 0 {
		return lo, lo
	}
	pos := min(max(upper/100, 0), 1) * float64(count-1)
	k := int(pos)
	frac := pos - float64(k)
	want := []int{k}
	if frac > 0 && k+1 < count {
		want = append(want, k+1)
	}
	stats := orderStats(data, hist, want)
	hi = stats[0]
	if len(stats) == 2 {
		hi += (stats[1] - stats[0]) * frac
	}
	return lo, hi
}

// nonZero is RobustRange's test of a voxel worth counting, |x| >= 1e-15;
// NaNs are not.
func nonZero(x float32) bool { return float64(x) >= 1e-15 || float64(x) <= -1e-15 }

// sortKey maps a float32 to a uint32 whose unsigned order is the floats'
// order (NaNs aside; -0 sorts below +0, which nonZero never passes).
func sortKey(x float32) uint32 {
	b := math.Float32bits(x)
	if b&(1<<31) != 0 {
		return ^b
	}
	return b | 1<<31
}

func fromSortKey(k uint32) float32 {
	if k&(1<<31) != 0 {
		return math.Float32frombits(k &^ (1 << 31))
	}
	return math.Float32frombits(^k)
}

// orderStats returns the order statistics ranks (0-based, ascending) of the
// non-zero values of data, given hist, the count of those values by the top
// 16 bits of their sortKey: a second pass counts the low 16 bits within the
// buckets that hold the ranks.
func orderStats(data []float32, hist []uint64, ranks []int) []float64 {
	type target struct {
		bucket uint32
		rank   uint64 // within the bucket
	}
	targets := make([]target, len(ranks))
	for i, r := range ranks {
		below := uint64(0)
		for b, c := range hist {
			if below+c > uint64(r) {
				targets[i] = target{uint32(b), uint64(r) - below}
				break
			}
			below += c
		}
	}
	var mu sync.Mutex
	low := make([][]uint64, len(targets))
	for i := range low {
		low[i] = make([]uint64, 1<<16)
	}
	parallel.Range(len(data), func(a, b int) {
		h := make([]*[1 << 16]uint32, len(targets))
		for i := range h {
			h[i] = new([1 << 16]uint32)
		}
		for _, x := range data[a:b] {
			if !nonZero(x) {
				continue
			}
			key := sortKey(x)
			for i, t := range targets {
				if key>>16 == t.bucket {
					h[i][uint16(key)]++
				}
			}
		}
		mu.Lock()
		for i := range h {
			for j, c := range h[i] {
				low[i][j] += uint64(c)
			}
		}
		mu.Unlock()
	})
	out := make([]float64, len(targets))
	for i, t := range targets {
		below := uint64(0)
		for j, c := range low[i] {
			if below+c > t.rank {
				out[i] = float64(fromSortKey(t.bucket<<16 | uint32(j)))
				break
			}
			below += c
		}
	}
	return out
}

// Scale255 maps [lo, hi] to 0..255, clipped and rounded to whole numbers
// (half to even, as numpy's rint), in place: the uint8 values of a
// FreeSurfer-conformed volume, kept as float32. If hi <= lo, values are only
// shifted by lo and clipped.
func Scale255(data []float32, lo, hi float64) {
	s := 1.0
	if hi > lo {
		s = 255 / (hi - lo)
	}
	parallel.Range(len(data), func(a, b int) {
		for i := a; i < b; i++ {
			y := (float64(data[i]) - lo) * s
			data[i] = float32(math.RoundToEven(min(max(y, 0), 255)))
		}
	})
}

// Quantiles returns the quantiles qs (0..1) of data as numpy's quantile
// with linear interpolation does; data is not modified. NaNs are ignored.
func Quantiles(data []float32, qs ...float64) []float64 {
	c := make([]float32, 0, len(data))
	for _, x := range data {
		if x == x {
			c = append(c, x)
		}
	}
	return quantilesInPlace(c, qs...)
}

// quantilesInPlace reorders c.
func quantilesInPlace(c []float32, qs ...float64) []float64 {
	out := make([]float64, len(qs))
	if len(c) == 0 {
		for i := range out {
			out[i] = math.NaN()
		}
		return out
	}
	for i, q := range qs {
		pos := min(max(q, 0), 1) * float64(len(c)-1)
		k := int(pos)
		lo := float64(selectK(c, k))
		if frac := pos - float64(k); frac > 0 && k+1 < len(c) {
			// After selectK, c[k+1:] holds the values >= c[k]; the next
			// order statistic is their minimum.
			hi := float64(slices.Min(c[k+1:]))
			out[i] = lo + (hi-lo)*frac
		} else {
			out[i] = lo
		}
	}
	return out
}

// selectK reorders c so that c[k] is the k-th smallest value, everything
// before it is <= c[k] and everything after >= c[k], and returns c[k]
// (Hoare's quickselect with a median-of-three pivot; it copes with many equal
// values, as a uint8-scaled volume has).
func selectK(c []float32, k int) float32 {
	lo, hi := 0, len(c)-1
	for hi > lo {
		mid := lo + (hi-lo)/2
		if c[mid] < c[lo] {
			c[mid], c[lo] = c[lo], c[mid]
		}
		if c[hi] < c[lo] {
			c[hi], c[lo] = c[lo], c[hi]
		}
		if c[hi] < c[mid] {
			c[hi], c[mid] = c[mid], c[hi]
		}
		pivot := c[mid]
		i, j := lo, hi
		for i <= j {
			for c[i] < pivot {
				i++
			}
			for c[j] > pivot {
				j--
			}
			if i <= j {
				c[i], c[j] = c[j], c[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return c[k]
		}
	}
	return c[k]
}
