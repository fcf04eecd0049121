// Package checked multiplies sizes without wrapping around: image and tensor
// sizes built from numbers in outside input (DICOM attributes, model output
// shapes, voxel spacings) are products that a hostile or corrupt value can
// push past the range of an int, where Go's arithmetic silently wraps, and a
// wrapped size passes every limit it is compared against.
package checked

import "math"

// Mul returns the product of factors (1 for none) and true, or 0 and false
// when a factor is negative or the product does not fit in an int. A zero
// factor makes the product 0 whatever the others are.
func Mul(factors ...int) (int, bool) {
	zero := false
	for _, f := range factors {
		if f < 0 {
			return 0, false
		}
		zero = zero || f == 0
	}
	if zero {
		return 0, true
	}
	p := 1
	for _, f := range factors {
		if p > math.MaxInt/f {
			return 0, false
		}
		p *= f
	}
	return p, true
}
