package preprocess

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// rotated is a grid of dims voxels of spacing mm, turned by angle (radians)
// about axis (0, 1 or 2) from the axial directions, centred on p.
func rotated(dims [3]int, spacing [3]float64, axis int, angle float64, centre [3]float64) Grid {
	c, s := math.Cos(angle), math.Sin(angle)
	var dir [3][3]float64
	for t := range 3 {
		dir[t][t] = 1
	}
	a, b := (axis+1)%3, (axis+2)%3
	dir[a][a], dir[a][b], dir[b][a], dir[b][b] = c, s, -s, c
	g := Grid{Dims: dims, Spacing: spacing, Direction: dir}
	g.Origin = sub(centre, sub(g.Point([3]float64{float64(dims[0]-1) / 2, float64(dims[1]-1) / 2, float64(dims[2]-1) / 2}), g.Origin))
	return g
}

// blob is a smooth bright ellipsoid on a dim background with noise, like a
// head: many voxels at 0, a range of whole numbers, a few bright ones.
func blob(g Grid, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	d := make([]float32, g.Len())
	n := g.Dims
	for k := range n[2] {
		for j := range n[1] {
			for i := range n[0] {
				x := (float64(i) - float64(n[0])/2) / (0.4 * float64(n[0]))
				y := (float64(j) - float64(n[1])/2) / (0.35 * float64(n[1]))
				z := (float64(k) - float64(n[2])/2) / (0.45 * float64(n[2]))
				r := x*x + y*y + z*z
				v := 0.0
				if r < 1 {
					v = math.Round(400 + 300*math.Cos(3*x)*math.Sin(2*y+z) + 40*rng.NormFloat64())
				} else if rng.IntN(20) == 0 {
					v = float64(rng.IntN(30))
				}
				d[i+n[0]*(j+n[1]*k)] = float32(v)
			}
		}
	}
	return d
}

// gridPairs are source and destination grids of every kind prepare meets:
// FreeSurfer's conform of axial, sagittal and oblique series, respacing,
// pure reorientation, and axes of one voxel.
func gridPairs(t *testing.T) []struct {
	name   string
	sg, dg Grid
} {
	t.Helper()
	ax := axial(37, 41, 23)
	sag := sagittal(30, 36, 25)
	obl := rotated([3]int{33, 29, 21}, [3]float64{1.1, 0.9, 1.7}, 0, 0.37, [3]float64{3, -5, 12})
	flat := axial(25, 19, 1)
	var out []struct {
		name   string
		sg, dg Grid
	}
	add := func(name string, sg Grid, dg Grid, err error) {
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, struct {
			name   string
			sg, dg Grid
		}{name, sg, dg})
	}
	for _, s := range []struct {
		name string
		g    Grid
	}{{"axial", ax}, {"sagittal", sag}, {"oblique", obl}, {"one slice", flat}} {
		g, err := Conform(s.g, 64, 1, "LIA")
		add(s.name+" conform", s.g, g, err)
		g, err = Respace(s.g, [3]float64{0.8, 1.3, 0.7})
		add(s.name+" respace", s.g, g, err)
		g, err = Reorient(s.g, "LIA")
		add(s.name+" reorient", s.g, g, err)
	}
	// 1 mm series conformed to 1 mm: every sample an exact half (odd
	// dimensions) or whole voxel (even), the aligned path.
	for _, d := range [][3]int{{41, 37, 29}, {40, 36, 28}} {
		for _, g := range []Grid{axial(d[0], d[1], d[2]), sagittal(d[0], d[1], d[2])} {
			g.Spacing = [3]float64{1, 1, 1}
			c, err := Conform(g, 56, 1, "LIA")
			add(fmt.Sprintf("%s %v 1 mm conform", g.Orientation(), d), g, c, err)
		}
	}
	// A conform whose grid lies inside the source: no voxel outside it.
	big := axial(90, 90, 90)
	big.Spacing = [3]float64{1, 1, 1}
	g, err := Conform(big, 40, 1, "LIA")
	add("inside conform", big, g, err)
	return out
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: value %d is %v, want %v (and maybe more)", what, i, got[i], want[i])
		}
	}
}

// someBoxes are boxes of a grid: the whole, a corner, a middle part, a
// single voxel and thin slabs.
func someBoxes(dims [3]int) []Box {
	boxes := []Box{{Hi: dims}, {Lo: [3]int{dims[0] / 2, dims[1] / 3, dims[2] / 4}, Hi: dims}}
	mid := Box{Hi: dims}
	for t := range 3 {
		mid.Lo[t], mid.Hi[t] = dims[t]/4, max(dims[t]/4+1, 3*dims[t]/4)
	}
	boxes = append(boxes, mid)
	one := Box{Lo: [3]int{dims[0] / 2, dims[1] / 2, dims[2] / 2}}
	one.Hi = [3]int{one.Lo[0] + 1, one.Lo[1] + 1, one.Lo[2] + 1}
	boxes = append(boxes, one)
	for t := range 3 {
		slab := Box{Hi: dims}
		slab.Lo[t], slab.Hi[t] = dims[t]-1, dims[t]
		boxes = append(boxes, slab)
	}
	return boxes
}

func TestLinear_SameAsBefore(t *testing.T) {
	alignedPairs := 0
	defer func() {
		if alignedPairs < 4 {
			t.Errorf("only %d grid pairs take the aligned path", alignedPairs)
		}
	}()
	for i, p := range gridPairs(t) {
		t.Run(p.name, func(t *testing.T) {
			src := blob(p.sg, uint64(i))
			want, err := refLinear(src, p.sg, p.dg, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Linear(src, p.sg, p.dg, nil)
			if err != nil {
				t.Fatal(err)
			}
			sameBits(t, "Linear", got, want)
			if m, err := newIndexMap(p.sg, p.dg); err == nil && m.aligned() {
				alignedPairs++
			}
			lo, hi := refRobustRange(src, 99.9)
			scaled := slices.Clone(want)
			Scale255(scaled, lo, hi)
			for _, b := range someBoxes(p.dg.Dims) {
				part, err := LinearBox(src, p.sg, p.dg, b, nil)
				if err != nil {
					t.Fatal(err)
				}
				sameBits(t, fmt.Sprintf("LinearBox %v", b), part, Extract(want, p.dg.Dims, b))
				u8, err := LinearScale255Box(src, p.sg, p.dg, b, lo, hi)
				if err != nil {
					t.Fatal(err)
				}
				for i, v := range Extract(scaled, p.dg.Dims, b) {
					if float32(u8[i]) != v {
						t.Fatalf("LinearScale255Box %v: value %d is %d, want %v", b, i, u8[i], v)
					}
				}
			}
		})
	}
}

func TestNearest_SameAsBefore(t *testing.T) {
	for i, p := range gridPairs(t) {
		t.Run(p.name, func(t *testing.T) {
			// Labels on the model's grid, mapped back to the series'.
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			labels := make([]uint8, p.dg.Len())
			for j := range labels {
				labels[j] = uint8(rng.IntN(4))
			}
			want, err := refNearest(labels, p.dg, p.sg, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Nearest(labels, p.dg, p.sg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatal("Nearest differs")
			}
			for _, b := range someBoxes(p.dg.Dims) {
				full := make([]uint8, len(labels))
				part := Extract(labels, p.dg.Dims, b)
				Paste(full, p.dg.Dims, b, part)
				want, err := refNearest(full, p.dg, p.sg, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := NearestFromBox(part, p.dg, b, p.sg, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("NearestFromBox %v differs from Nearest of the pasted box", b)
				}
			}
		})
	}
}

func TestCandidateBox_HoldsEverySample(t *testing.T) {
	for i, p := range gridPairs(t) {
		t.Run(p.name, func(t *testing.T) {
			src := blob(p.sg, uint64(i))
			full, err := Linear(src, p.sg, p.dg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, cut := range []float32{1e-3, 0.5, 100, 500, 700, 1e6} {
				lo, hi := Range(src)
				b, ok, err := CandidateBox(src, p.sg, p.dg, cut, max(-lo, hi))
				if err != nil {
					t.Fatal(err)
				}
				want, wantOK := refForeground(full, p.dg.Dims, cut, 0)
				if !wantOK {
					continue // nothing to hold, whatever ok says
				}
				if !ok {
					t.Fatalf("cut %v: no candidates, but samples above it in %v", cut, want)
				}
				if !b.Contains(want) {
					t.Fatalf("cut %v: candidate box %v does not hold the samples' box %v", cut, b, want)
				}
			}
		})
	}
}

func TestRobustRange_SameAsBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]float32{
		"empty":    {},
		"zeros":    make([]float32, 1000),
		"one":      {5},
		"two":      {0, 3, 0, 7},
		"negative": {-3, -1, 0, -7, 2, -1e-20, 1e-20},
		"nan":      {1, float32(math.NaN()), 3, 4},
		"ramp":     ramp(100000),
	}
	ints := make([]float32, 300000)
	for i := range ints {
		if rng.IntN(3) > 0 {
			ints[i] = float32(rng.IntN(4096) - 100)
		}
	}
	cases["integers"] = ints
	floats := make([]float32, 200000)
	for i := range floats {
		floats[i] = float32(rng.NormFloat64() * 1e3)
	}
	cases["floats"] = floats
	same := make([]float32, 5000)
	for i := range same {
		same[i] = 42
	}
	cases["constant"] = same
	for name, d := range cases {
		for _, q := range []float64{0, 0.1, 50, 99, 99.9, 100} {
			t.Run(fmt.Sprintf("%s/%g", name, q), func(t *testing.T) {
				wlo, whi := refRobustRange(slices.Clone(d), q)
				lo, hi := RobustRange(d, q)
				if !sameFloat(lo, wlo) || !sameFloat(hi, whi) {
					t.Errorf("RobustRange = %v, %v; want %v, %v", lo, hi, wlo, whi)
				}
			})
		}
	}
}

func TestMinMax_SameAsBefore(t *testing.T) {
	for name, d := range map[string][]float32{
		"ramp":     ramp(100001),
		"nan":      {1, 2, float32(math.NaN()), 4},
		"constant": {3, 3, 3},
		"empty":    {},
		"inf":      {float32(math.Inf(-1)), 0, 1},
	} {
		t.Run(name, func(t *testing.T) {
			want := slices.Clone(d)
			refMinMax(want)
			got := slices.Clone(d)
			MinMax(got)
			sameBits(t, "MinMax", got, want)
		})
	}
}

// labelBlobs are label grids with many components of several labels, one
// of them large, at densities from sparse to nearly full, and ties.
func labelBlobs() map[string]struct {
	dims [3]int
	l    []uint8
} {
	out := map[string]struct {
		dims [3]int
		l    []uint8
	}{}
	for _, density := range []int{2, 10, 40, 70, 97} {
		dims := [3]int{23, 17, 19}
		rng := rand.New(rand.NewPCG(uint64(density), 9))
		l := make([]uint8, dims[0]*dims[1]*dims[2])
		for i := range l {
			if rng.IntN(100) < density {
				l[i] = uint8(1 + rng.IntN(3))
			}
		}
		out[fmt.Sprintf("random %d%%", density)] = struct {
			dims [3]int
			l    []uint8
		}{dims, l}
	}
	// Two equal cubes and a smaller one: the first in memory order wins.
	dims := [3]int{12, 10, 9}
	l := make([]uint8, dims[0]*dims[1]*dims[2])
	cube := func(i0, j0, k0, n int, v uint8) {
		for k := k0; k < k0+n; k++ {
			for j := j0; j < j0+n; j++ {
				for i := i0; i < i0+n; i++ {
					l[i+dims[0]*(j+dims[1]*k)] = v
				}
			}
		}
	}
	cube(7, 0, 5, 3, 2)
	cube(0, 5, 0, 3, 1)
	cube(8, 7, 0, 2, 3)
	out["tie"] = struct {
		dims [3]int
		l    []uint8
	}{dims, l}
	// Long runs of background and of labels up to 255, of every length
	// around the eight bytes the run finder takes at once.
	for seed := range uint64(3) {
		dims := [3]int{101, 9, 6}
		rng := rand.New(rand.NewPCG(seed, 17))
		l := make([]uint8, dims[0]*dims[1]*dims[2])
		for i, on := 0, false; i < len(l); on = !on {
			n := 1 + rng.IntN(40)
			for j := i; j < min(i+n, len(l)); j++ {
				if on {
					l[j] = uint8(1 + rng.IntN(255))
				}
			}
			i += n
		}
		out[fmt.Sprintf("long runs %d", seed)] = struct {
			dims [3]int
			l    []uint8
		}{dims, l}
	}
	// Single rows, columns and slices.
	for _, d := range [][3]int{{40, 1, 1}, {1, 40, 1}, {1, 1, 40}, {1, 1, 1}} {
		l := make([]uint8, d[0]*d[1]*d[2])
		for i := range l {
			if i%3 != 1 {
				l[i] = 1
			}
		}
		out[fmt.Sprintf("line %v", d)] = struct {
			dims [3]int
			l    []uint8
		}{d, l}
	}
	return out
}

func TestLargestComponent_SameAsBefore(t *testing.T) {
	for name, c := range labelBlobs() {
		t.Run(name, func(t *testing.T) {
			want := slices.Clone(c.l)
			wantN := refLargestComponent(want, c.dims)
			got := slices.Clone(c.l)
			gotN := LargestComponent(got, c.dims)
			if gotN != wantN || !slices.Equal(got, want) {
				t.Errorf("cleared %d voxels, want %d; labels equal: %v", gotN, wantN, slices.Equal(got, want))
			}
		})
	}
}

func TestForeground_SameAsBefore(t *testing.T) {
	g := axial(31, 27, 22)
	d := blob(g, 5)
	for _, thr := range []float32{-1, 0, 10, 400, 650, 1e9} {
		for _, pad := range []int{0, 3, 100} {
			wb, wok := refForeground(d, g.Dims, thr, pad)
			b, ok := Foreground(d, g.Dims, thr, pad)
			if b != wb || ok != wok {
				t.Errorf("threshold %v pad %d: %v %v, want %v %v", thr, pad, b, ok, wb, wok)
			}
		}
	}
}

func TestScale255Threshold(t *testing.T) {
	for _, r := range [][2]float64{{0, 255}, {0, 1000}, {-200, 3000}, {5, 5}, {10, 3}, {0, 1e-30}} {
		lo, hi := r[0], r[1]
		for _, s := range []uint8{0, 1, 2, 127, 128, 200, 255} {
			x := Scale255Threshold(lo, hi, s)
			if math.IsInf(float64(x), 1) {
				if Scale255Value(math.MaxFloat32, lo, hi) >= s {
					t.Errorf("[%g, %g] %d: +Inf, but MaxFloat32 reaches it", lo, hi, s)
				}
				continue
			}
			if Scale255Value(x, lo, hi) < s {
				t.Errorf("[%g, %g] %d: %v maps to %d", lo, hi, s, x, Scale255Value(x, lo, hi))
			}
			if below := math.Nextafter32(x, float32(math.Inf(-1))); x > -math.MaxFloat32 && Scale255Value(below, lo, hi) >= s {
				t.Errorf("[%g, %g] %d: %v is not the smallest, %v maps to %d", lo, hi, s, x, below, Scale255Value(below, lo, hi))
			}
		}
	}
}

// BenchmarkLinearScale255Box conforms a ch2-sized axial grid (181x217x181,
// 1 mm) to FreeSurfer's 256³ LIA, as the brainchop models' preprocessing
// does, over the box a head's crop needs.
func BenchmarkLinearScale255Box(b *testing.B) {
	sg := axial(181, 217, 181)
	sg.Spacing = [3]float64{1, 1, 1}
	src := blob(sg, 1)
	dg, err := Conform(sg, 256, 1, "LIA")
	if err != nil {
		b.Fatal(err)
	}
	box := Box{Lo: [3]int{3, 20, 20}, Hi: [3]int{252, 231, 234}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := LinearScale255Box(src, sg, dg, box, 0, 800); err != nil {
			b.Fatal(err)
		}
	}
}

// TestScale255Value holds the uint8 scaling to Scale255's, ties to even
// included.
func TestScale255Value(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	check := func(v float32, lo, hi float64) {
		want := []float32{v}
		Scale255(want, lo, hi)
		if got := Scale255Value(v, lo, hi); float32(got) != want[0] {
			t.Fatalf("Scale255Value(%v, %v, %v) = %d, want %v", v, lo, hi, got, want[0])
		}
	}
	for k := -20; k <= 540; k++ {
		check(float32(k)/2, 0, 255) // every half, so every tie
		check(float32(k)/2, -0.5, 254.5)
	}
	check(float32(math.Copysign(0, -1)), 0, 255)
	for range 100000 {
		lo := rng.NormFloat64() * 100
		check(float32(rng.NormFloat64()*1000), lo, lo+rng.ExpFloat64()*500)
	}
}

func TestRange_SameAsBuiltins(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, d := range [][]float32{
		{}, {0}, {negZero}, {0, negZero}, {negZero, 0}, {negZero, negZero}, {1, negZero, 0, -1},
		{nan}, {1, nan, 2}, {negZero, nan}, {-inf, 3, inf}, {5, 5}, {-3, negZero}, {3, 0, negZero},
	} {
		wlo, whi := math.Inf(1), math.Inf(-1)
		for _, x := range d {
			wlo, whi = min(wlo, float64(x)), max(whi, float64(x))
		}
		lo, hi := rangeOf(d)
		if !sameFloat(lo, wlo) || !sameFloat(hi, whi) {
			t.Errorf("rangeOf(%v) = %v, %v; want %v, %v", d, lo, hi, wlo, whi)
		}
	}
}

// sameFloat: the same bits (so -0 is not 0), or both NaN, whose payload
// nothing reads.
func sameFloat(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || (a != a && b != b)
}
