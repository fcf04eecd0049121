package jpeg

import "fmt"

// lossless decodes a lossless scan of one component (T.81 Annex H) with
// selection value (predictor) sv and point transform pt. Samples are
// reconstructed in dst at their transformed precision P-Pt and shifted left
// by pt at the end, as H.2 reconstructs them.
func (d *decoder) lossless(h *huffTable, sv, pt int) error {
	var br bitReader
	br.reset(d.src, d.pos)
	initial := int32(1) << (d.precision - pt - 1)
	cols := d.cols
	linesPerInterval := 0
	if d.restart > 0 {
		linesPerInterval = d.restart / cols
	}
	interval := 0
	first := true // the first line of the scan or of a restart interval
	for y := range d.rows {
		if linesPerInterval > 0 && y > 0 && y%linesPerInterval == 0 {
			if err := d.restartMarker(&br, interval); err != nil {
				return err
			}
			interval++
			first = true
		}
		row := d.dst[y*cols : (y+1)*cols]
		var prev []uint16
		if !first {
			prev = d.dst[(y-1)*cols : y*cols]
		}
		for x := range cols {
			var px int32
			switch {
			case first && x == 0:
				px = initial
			case first:
				px = int32(row[x-1])
			case x == 0:
				px = int32(prev[0])
			default:
				ra, rb, rc := int32(row[x-1]), int32(prev[x]), int32(prev[x-1])
				switch sv {
				case 1:
					px = ra
				case 2:
					px = rb
				case 3:
					px = rc
				case 4:
					px = ra + rb - rc
				case 5:
					px = ra + (rb-rc)>>1
				case 6:
					px = rb + (ra-rc)>>1
				case 7:
					px = (ra + rb) >> 1
				}
			}
			t, err := br.decode(h)
			if err != nil {
				return fmt.Errorf("sample %d,%d: %w", x, y, err)
			}
			var diff int32
			switch {
			case t == 16:
				// No extra bits follow (T.81 H.1.2.2).
				diff = 32768
			case t > 16:
				return fmt.Errorf("sample %d,%d: difference category %d", x, y, t)
			default:
				diff = br.receiveExtend(int(t))
			}
			row[x] = uint16(px + diff)
		}
		first = false
		if br.overrun() {
			return fmt.Errorf("entropy-coded data ends in line %d of %d", y+1, d.rows)
		}
	}
	if pt > 0 {
		for i, v := range d.dst {
			d.dst[i] = v << pt
		}
	}
	return nil
}
