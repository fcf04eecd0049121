package jpeg

import (
	"math"
)

// DCMTK's dcmcjpeg writes no restart intervals and no 16-bit quantisation
// tables, so the tests encode those themselves with the small encoder here,
// and check its codestreams against DCMTK's decoder (restart_test.go).

// bitWriter writes entropy-coded data, stuffing a 00 after every FF.
type bitWriter struct {
	out []byte
	acc uint32
	n   int
}

func (w *bitWriter) write(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		w.acc = w.acc<<1 | (v>>uint(i))&1
		w.n++
		if w.n == 8 {
			w.emit(byte(w.acc))
			w.acc, w.n = 0, 0
		}
	}
}

func (w *bitWriter) emit(b byte) {
	w.out = append(w.out, b)
	if b == 0xff {
		w.out = append(w.out, 0)
	}
}

// flush pads the last byte with 1 bits (T.81 F.1.2.3).
func (w *bitWriter) flush() {
	if w.n > 0 {
		w.write(0xff, 8-w.n)
	}
}

func (w *bitWriter) marker(m byte) {
	w.flush()
	w.out = append(w.out, 0xff, m)
}

func (w *bitWriter) segment(m byte, params ...byte) {
	n := len(params) + 2
	w.out = append(w.out, 0xff, m, byte(n>>8), byte(n))
	w.out = append(w.out, params...)
}

// flatTable is a Huffman table giving each of symbols a code of bits bits,
// in order: the codes of symbol i is i.
type flatTable struct {
	bits    int
	symbols []byte
	code    map[byte]uint32
}

func newFlatTable(bits int, symbols []byte) *flatTable {
	t := &flatTable{bits: bits, symbols: symbols, code: map[byte]uint32{}}
	for i, s := range symbols {
		t.code[s] = uint32(i)
	}
	return t
}

// dht returns the table's DHT parameters for class tc and id th.
func (t *flatTable) dht(tc, th byte) []byte {
	p := []byte{tc<<4 | th}
	counts := make([]byte, 16)
	counts[t.bits-1] = byte(len(t.symbols))
	return append(append(p, counts...), t.symbols...)
}

// magnitude returns the category of v and its bits (T.81 F.1.2.1.1).
func magnitude(v int) (int, uint32) {
	a := v
	if a < 0 {
		a = -a
	}
	s := 0
	for a>>s != 0 {
		s++
	}
	if v < 0 {
		v += 1<<s - 1
	}
	return s, uint32(v) & (1<<s - 1)
}

// encodeLossless encodes samples (precision p, point transform pt) with
// predictor sv, a restart every restartLines lines (0: none).
func encodeLossless(samples []uint16, rows, cols, p, sv, pt, restartLines int) []byte {
	cats := make([]byte, 17)
	for i := range cats {
		cats[i] = byte(i)
	}
	h := newFlatTable(5, cats)
	w := &bitWriter{out: []byte{0xff, markerSOI}}
	w.segment(markerSOF3, byte(p), byte(rows>>8), byte(rows), byte(cols>>8), byte(cols), 1, 1, 0x11, 0)
	w.segment(markerDHT, h.dht(0, 0)...)
	if restartLines > 0 {
		ri := restartLines * cols
		w.segment(markerDRI, byte(ri>>8), byte(ri))
	}
	w.segment(markerSOS, 1, 1, 0, byte(sv), 0, byte(pt))
	at := func(x, y int) int { return int(samples[y*cols+x] >> pt) }
	first, interval := true, 0
	for y := range rows {
		if restartLines > 0 && y > 0 && y%restartLines == 0 {
			w.marker(markerRST0 + byte(interval%8))
			interval++
			first = true
		}
		for x := range cols {
			var px int
			switch {
			case first && x == 0:
				px = 1 << (p - pt - 1)
			case first:
				px = at(x-1, y)
			case x == 0:
				px = at(0, y-1)
			default:
				ra, rb, rc := at(x-1, y), at(x, y-1), at(x-1, y-1)
				px = [8]int{0, ra, rb, rc, ra + rb - rc, ra + (rb-rc)>>1, rb + (ra-rc)>>1, (ra + rb) >> 1}[sv]
			}
			// The difference modulo 2^16, as a value in -32767..32768.
			d := (at(x, y) - px) & 0xffff
			if d >= 0x8000 {
				d -= 0x10000
			}
			if d == -0x8000 {
				w.write(h.code[16], h.bits)
				continue
			}
			s, bits := magnitude(d)
			w.write(h.code[byte(s)], h.bits)
			w.write(bits, s)
		}
		first = false
	}
	w.marker(markerEOI)
	return w.out
}

// encodeDCT encodes 8-bit or 12-bit samples as a sequential DCT frame
// (SOF0 for 8 bits, SOF1 for 12) with quantisation table q (natural
// order), written with 16-bit entries when q16, and a restart every
// restartBlocks blocks (0: none).
func encodeDCT(samples []uint16, rows, cols, p int, q [64]int, q16 bool, restartBlocks int) []byte {
	dcSyms := make([]byte, 16)
	for i := range dcSyms {
		dcSyms[i] = byte(i)
	}
	var acSyms []byte
	acSyms = append(acSyms, 0x00, 0xf0)
	for r := range 16 {
		for s := 1; s <= 15; s++ {
			acSyms = append(acSyms, byte(r<<4|s))
		}
	}
	dc, ac := newFlatTable(5, dcSyms), newFlatTable(8, acSyms)
	sof := byte(markerSOF0)
	if p != 8 || q16 {
		sof = markerSOF1
	}
	w := &bitWriter{out: []byte{0xff, markerSOI}}
	dqt := []byte{0}
	if q16 {
		dqt[0] = 0x10
	}
	for k := range 64 {
		v := q[zigzag[k]]
		if q16 {
			dqt = append(dqt, byte(v>>8))
		}
		dqt = append(dqt, byte(v))
	}
	w.segment(markerDQT, dqt...)
	w.segment(sof, byte(p), byte(rows>>8), byte(rows), byte(cols>>8), byte(cols), 1, 1, 0x11, 0)
	w.segment(markerDHT, append(dc.dht(0, 0), ac.dht(1, 0)...)...)
	if restartBlocks > 0 {
		w.segment(markerDRI, byte(restartBlocks>>8), byte(restartBlocks))
	}
	w.segment(markerSOS, 1, 1, 0x00, 0, 63, 0)
	shift := 1 << (p - 1)
	pred, n, interval := 0, 0, 0
	for by := 0; by < (rows+7)/8; by++ {
		for bx := 0; bx < (cols+7)/8; bx++ {
			if restartBlocks > 0 && n > 0 && n%restartBlocks == 0 {
				w.marker(markerRST0 + byte(interval%8))
				interval++
				pred = 0
			}
			n++
			// Forward DCT (T.81 A.3.3) of the block, edges replicated.
			var f [64]float64
			for y := range 8 {
				for x := range 8 {
					sx, sy := min(bx*8+x, cols-1), min(by*8+y, rows-1)
					f[y*8+x] = float64(int(samples[sy*cols+sx]) - shift)
				}
			}
			var coef [64]int
			for v := range 8 {
				for u := range 8 {
					var sum float64
					for y := range 8 {
						for x := range 8 {
							sum += f[y*8+x] * idctBasis[x][u] * idctBasis[y][v]
						}
					}
					coef[v*8+u] = int(math.Round(sum / float64(q[v*8+u])))
				}
			}
			s, bits := magnitude(coef[0] - pred)
			pred = coef[0]
			w.write(dc.code[byte(s)], dc.bits)
			w.write(bits, s)
			run := 0
			for k := 1; k < 64; k++ {
				c := coef[zigzag[k]]
				if c == 0 {
					run++
					continue
				}
				for run > 15 {
					w.write(ac.code[0xf0], ac.bits)
					run -= 16
				}
				s, bits := magnitude(c)
				w.write(ac.code[byte(run<<4|s)], ac.bits)
				w.write(bits, s)
				run = 0
			}
			if run > 0 {
				w.write(ac.code[0x00], ac.bits)
			}
		}
	}
	w.marker(markerEOI)
	return w.out
}
