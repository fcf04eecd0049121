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

// rgbFromCIELab is cieLab's inverse: the sRGB colour of a PS3.3 C.10.7.1.1
// CIELab value, clamped to the sRGB gamut, so that a SEG read back is drawn
// in the colour it recommends.
func rgbFromCIELab(lab [3]int) [3]uint8 {
	l := float64(lab[0]) / 65535 * 100
	a := float64(lab[1])/65535*255 - 128
	bb := float64(lab[2])/65535*255 - 128

	fy := (l + 16) / 116
	fx := fy + a/500
	fz := fy - bb/200
	inv := func(t float64) float64 {
		const d = 6.0 / 29
		if t > d {
			return t * t * t
		}
		return 3 * d * d * (t - 4.0/29)
	}
	const xn, yn, zn = 0.95047, 1.0, 1.08883
	x, y, z := xn*inv(fx), yn*inv(fy), zn*inv(fz)

	lin := [3]float64{
		3.2404542*x - 1.5371385*y - 0.4985314*z,
		-0.9692660*x + 1.8760108*y + 0.0415560*z,
		0.0556434*x - 0.2040259*y + 1.0572252*z,
	}
	var out [3]uint8
	for i, v := range lin {
		v = math.Max(0, math.Min(1, v))
		if v <= 0.0031308 {
			v *= 12.92
		} else {
			v = 1.055*math.Pow(v, 1/2.4) - 0.055
		}
		out[i] = uint8(math.Round(math.Max(0, math.Min(1, v)) * 255))
	}
	return out
}

// fallbackColour is the colour of a segment whose SEG recommends none:
// distinct, saturated colours in turn.
func fallbackColour(number int) [3]uint8 {
	palette := [...][3]uint8{{230, 25, 75}, {60, 180, 75}, {255, 225, 25}, {0, 130, 200}, {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}}
	return palette[(number-1+len(palette))%len(palette)]
}
