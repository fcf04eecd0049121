package dicomseg

import "math"

// cieLab converts an sRGB colour to the PS3.3 C.10.7.1.1 encoding of a CIELab
// value: L* in 0..100 scaled to 0..65535 and a*, b* in -128..127 offset by 128
// and scaled to 0..65535. The conversion goes through linear sRGB and CIE XYZ
// with the D65 white point, the one sRGB is defined on.
func cieLab(rgb [3]uint8) [3]int {
	var lin [3]float64
	for i, c := range rgb {
		v := float64(c) / 255
		if v <= 0.04045 {
			lin[i] = v / 12.92
		} else {
			lin[i] = math.Pow((v+0.055)/1.055, 2.4)
		}
	}
	x := 0.4124564*lin[0] + 0.3575761*lin[1] + 0.1804375*lin[2]
	y := 0.2126729*lin[0] + 0.7151522*lin[1] + 0.0721750*lin[2]
	z := 0.0193339*lin[0] + 0.1191920*lin[1] + 0.9503041*lin[2]

	const xn, yn, zn = 0.95047, 1.0, 1.08883
	f := func(t float64) float64 {
		const d = 6.0 / 29
		if t > d*d*d {
			return math.Cbrt(t)
		}
		return t/(3*d*d) + 4.0/29
	}
	fx, fy, fz := f(x/xn), f(y/yn), f(z/zn)
	l := 116*fy - 16
	a := 500 * (fx - fy)
	b := 200 * (fy - fz)

	scale := func(v, lo, hi float64) int {
		s := math.Round((v - lo) / (hi - lo) * 65535)
		return int(math.Max(0, math.Min(65535, s)))
	}
	return [3]int{scale(l, 0, 100), scale(a, -128, 127), scale(b, -128, 127)}
}
