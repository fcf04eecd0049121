package preprocess

import (
	"math"
	"slices"

	"github.com/segbridge/segbridge/internal/parallel"
)

// MinMax maps data's minimum to 0 and maximum to 1, in place. A constant
// volume (or one of NaNs only) becomes all 0.
func MinMax(data []float32) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range data {
		lo = min(lo, float64(x))
		hi = max(hi, float64(x))
	}
	Window(data, lo, hi, false)
}

// Window maps [lo, hi] to [0, 1] in place, clipping outside it when clip is
// set. If hi <= lo every value becomes 0.
func Window(data []float32, lo, hi float64, clip bool) {
	if !(hi > lo) {
		clear(data)
		return
	}
	s := 1 / (hi - lo)
	parallel.Range(len(data), func(a, b int) {
		for i := a; i < b; i++ {
			y := (float64(data[i]) - lo) * s
			if clip {
				y = min(max(y, 0), 1)
			}
			data[i] = float32(y)
		}
	})
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
// voxels.
func RobustRange(data []float32, upper float64) (lo, hi float64) {
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
