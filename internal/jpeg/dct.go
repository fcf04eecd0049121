package jpeg

import (
	"fmt"
	"math"
)

// zigzag[k] is the natural (row-major) index of the k-th coefficient in
// zig-zag order (T.81 Figure A.6).
var zigzag = [64]uint8{
	0, 1, 8, 16, 9, 2, 3, 10,
	17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34,
	27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36,
	29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46,
	53, 60, 61, 54, 47, 55, 62, 63,
}

// idctBasis[x][u] is C(u)/2 * cos((2x+1)u*pi/16) (T.81 A.3.3), so that the
// two-dimensional inverse DCT is two passes of eight-term sums.
var idctBasis = func() (t [8][8]float64) {
	for x := range 8 {
		for u := range 8 {
			c := 1.0
			if u == 0 {
				c = 1 / math.Sqrt2
			}
			t[x][u] = c / 2 * math.Cos(float64(2*x+1)*float64(u)*math.Pi/16)
		}
	}
	return t
}()

// sequential decodes a sequential DCT scan of one component (T.81 F.2):
// one 8x8 block per MCU, blocks left to right, top to bottom.
func (d *decoder) sequential(dc, ac *huffTable, q *[64]int32) error {
	bw, bh := (d.cols+7)/8, (d.rows+7)/8
	var br bitReader
	br.reset(d.src, d.pos)
	maxSample := int32(1)<<d.precision - 1
	shift := float64(int32(1) << (d.precision - 1))
	var pred int32
	var coef [64]float64
	var block [64]float64
	interval, left := 0, d.restart
	for by := range bh {
		for bx := range bw {
			if d.restart > 0 {
				if left == 0 {
					if err := d.restartMarker(&br, interval); err != nil {
						return err
					}
					interval++
					left = d.restart
					pred = 0
				}
				left--
			}
			coef = [64]float64{}
			t, err := br.decode(dc)
			if err != nil {
				return fmt.Errorf("block %d,%d: DC: %w", bx, by, err)
			}
			if t > 16 {
				return fmt.Errorf("block %d,%d: DC difference category %d", bx, by, t)
			}
			pred += br.receiveExtend(int(t))
			coef[0] = float64(pred * q[0])
			hasAC := false
			for k := 1; k < 64; k++ {
				rs, err := br.decode(ac)
				if err != nil {
					return fmt.Errorf("block %d,%d: AC: %w", bx, by, err)
				}
				r, s := int(rs>>4), int(rs&15)
				if s == 0 {
					if r != 15 {
						break // EOB
					}
					k += 15
					continue
				}
				k += r
				if k > 63 {
					return fmt.Errorf("block %d,%d: AC run past coefficient 63", bx, by)
				}
				coef[zigzag[k]] = float64(br.receiveExtend(s) * q[k])
				hasAC = true
			}
			if !hasAC {
				// A flat block: only the DC term.
				v := clamp(int32(math.Round(coef[0]/8+shift)), maxSample)
				for i := range block {
					block[i] = float64(v)
				}
			} else {
				idct(&coef, &block)
				for i := range block {
					block[i] = float64(clamp(int32(math.Round(block[i]+shift)), maxSample))
				}
			}
			x0, y0 := bx*8, by*8
			for y := 0; y < 8 && y0+y < d.rows; y++ {
				row := d.dst[(y0+y)*d.cols:]
				for x := 0; x < 8 && x0+x < d.cols; x++ {
					row[x0+x] = uint16(block[y*8+x])
				}
			}
		}
		if br.overrun() {
			return fmt.Errorf("entropy-coded data ends in block row %d of %d", by+1, bh)
		}
	}
	return nil
}

// clamp limits v to 0..max.
func clamp(v, max int32) int32 {
	if v < 0 {
		return 0
	}
	if v > max {
		return max
	}
	return v
}

// idct computes the inverse DCT of the 8x8 coefficients in (natural order)
// into out, in float64, rows first and then columns; a row of zero
// coefficients is skipped.
func idct(in, out *[64]float64) {
	var tmp [64]float64 // tmp[v*8+x]: rows transformed along u
	for v := range 8 {
		row := in[v*8 : v*8+8]
		zero := true
		for _, c := range row[1:] {
			if c != 0 {
				zero = false
				break
			}
		}
		if zero {
			c := row[0] * idctBasis[0][0]
			for x := range 8 {
				tmp[v*8+x] = c
			}
			continue
		}
		for x := range 8 {
			b := &idctBasis[x]
			tmp[v*8+x] = row[0]*b[0] + row[1]*b[1] + row[2]*b[2] + row[3]*b[3] +
				row[4]*b[4] + row[5]*b[5] + row[6]*b[6] + row[7]*b[7]
		}
	}
	for x := range 8 {
		for y := range 8 {
			b := &idctBasis[y]
			out[y*8+x] = tmp[x]*b[0] + tmp[8+x]*b[1] + tmp[16+x]*b[2] + tmp[24+x]*b[3] +
				tmp[32+x]*b[4] + tmp[40+x]*b[5] + tmp[48+x]*b[6] + tmp[56+x]*b[7]
		}
	}
}
