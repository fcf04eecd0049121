package preprocess

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// axial is a DICOM axial grid: i to the patient's left, j posterior, k
// superior, with uneven spacing and an origin off zero.
func axial(cols, rows, depth int) Grid {
	return Grid{
		Dims:      [3]int{cols, rows, depth},
		Spacing:   [3]float64{0.9, 1.1, 2},
		Origin:    [3]float64{-20, -30, 15},
		Direction: [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}},
	}
}

// sagittal is a DICOM sagittal grid: i posterior, j inferior, k to the left.
func sagittal(cols, rows, depth int) Grid {
	return Grid{
		Dims:      [3]int{cols, rows, depth},
		Spacing:   [3]float64{1, 1, 1},
		Origin:    [3]float64{-10, -40, 60},
		Direction: [3][3]float64{{0, 1, 0}, {0, 0, -1}, {1, 0, 0}},
	}
}

func ramp(n int) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(i%251) + 1
	}
	return d
}

func TestGrid_Orientation(t *testing.T) {
	tests := []struct {
		name string
		g    Grid
		want string
	}{
		{"axial", axial(4, 3, 2), "SPL"},
		{"sagittal", sagittal(4, 3, 2), "LIP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.g.Orientation(); got != tt.want {
				t.Errorf("Orientation() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestReorient_RoundTrip(t *testing.T) {
	for _, src := range []Grid{axial(7, 5, 3), sagittal(6, 4, 5)} {
		for _, code := range []string{"LIA", "RAS", "LPS", "SPL", "AIL"} {
			t.Run(src.Orientation()+"->"+code, func(t *testing.T) {
				dst, err := Reorient(src, code)
				if err != nil {
					t.Fatal(err)
				}
				if got := dst.Orientation(); got != code {
					t.Fatalf("orientation %s, want %s", got, code)
				}
				// Every voxel keeps its position in patient space.
				data := ramp(src.Len())
				moved, err := Linear(data, src, dst, nil)
				if err != nil {
					t.Fatal(err)
				}
				back, err := Linear(moved, dst, src, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(back, data) {
					t.Fatal("reorient and back changed the voxels")
				}
				labels := make([]uint8, len(data))
				for i, x := range data {
					labels[i] = uint8(x)
				}
				ml, _ := Nearest(labels, src, dst, nil)
				bl, _ := Nearest(ml, dst, src, nil)
				if !slices.Equal(bl, labels) {
					t.Fatal("labels changed on the round trip")
				}
				// Voxel 0 of dst is where src has the same value.
				p := dst.Point([3]float64{})
				var idx [3]float64
				for a := range 3 {
					idx[a] = dot(sub(p, src.Origin), src.Direction[a]) / src.Spacing[a]
				}
				i := int(math.Round(idx[0])) + src.Dims[0]*(int(math.Round(idx[1]))+src.Dims[1]*int(math.Round(idx[2])))
				if moved[0] != data[i] {
					t.Errorf("dst voxel 0 = %v, the src voxel at its position = %v", moved[0], data[i])
				}
			})
		}
	}
}

func TestReorient_AxialToLIA(t *testing.T) {
	src := axial(7, 5, 3)
	dst, err := Reorient(src, "LIA")
	if err != nil {
		t.Fatal(err)
	}
	// D = L = i, H = I = -k, W = A = -j: grid axes 0, 1, 2 are -j, -k, i.
	if dst.Dims != [3]int{5, 3, 7} {
		t.Errorf("dims %v, want [5 3 7]", dst.Dims)
	}
	if dst.Spacing != [3]float64{1.1, 2, 0.9} {
		t.Errorf("spacing %v", dst.Spacing)
	}
	want := src.Point([3]float64{0, 4, 2})
	if dst.Origin != want {
		t.Errorf("origin %v, want %v", dst.Origin, want)
	}
}

func TestReorient_BadCode(t *testing.T) {
	for _, code := range []string{"", "LL", "LLA", "XYZ", "LIAS"} {
		if _, err := Reorient(axial(2, 2, 2), code); err == nil {
			t.Errorf("Reorient(%q): no error", code)
		}
	}
}

// TestLinear_ReproducesLinearFunctions: trilinear interpolation is exact for
// a function linear in patient space, on any grid inside the source.
func TestLinear_ReproducesLinearFunctions(t *testing.T) {
	src := axial(20, 18, 12)
	f := func(p [3]float64) float64 { return 3*p[0] - 2*p[1] + 0.5*p[2] + 7 }
	data := make([]float32, src.Len())
	for k := range src.Dims[2] {
		for j := range src.Dims[1] {
			for i := range src.Dims[0] {
				data[i+src.Dims[0]*(j+src.Dims[1]*k)] = float32(f(src.Point([3]float64{float64(i), float64(j), float64(k)})))
			}
		}
	}
	// A tilted grid of 0.7 mm voxels about the source's centre.
	c, s := math.Cos(0.3), math.Sin(0.3)
	dst := Grid{
		Dims:      [3]int{14, 13, 9},
		Spacing:   [3]float64{0.7, 0.7, 0.7},
		Direction: [3][3]float64{{c, s, 0}, {-s, c, 0}, {0, 0, 1}},
	}
	dst.Origin = sub(src.Point([3]float64{9.5, 8.5, 5.5}), dst.Point([3]float64{6.5, 6, 4}))
	out, err := Linear(data, src, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	inside := 0
	for k := range dst.Dims[2] {
		for j := range dst.Dims[1] {
			for i := range dst.Dims[0] {
				got := out[i+dst.Dims[0]*(j+dst.Dims[1]*k)]
				want := f(dst.Point([3]float64{float64(i), float64(j), float64(k)}))
				if got == 0 {
					continue // outside the source
				}
				inside++
				if math.Abs(float64(got)-want) > 1e-3*math.Max(1, math.Abs(want)) {
					t.Fatalf("voxel (%d,%d,%d) = %v, want %v", i, j, k, got, want)
				}
			}
		}
	}
	if inside < dst.Len()*9/10 {
		t.Errorf("only %d of %d voxels inside", inside, dst.Len())
	}
}

func TestRespace(t *testing.T) {
	src := axial(20, 10, 6) // 0.9 x 1.1 x 2 mm
	dst, err := Respace(src, [3]float64{1, 1, 1})
	if err != nil {
		t.Fatal(err)
	}
	// D, H, W = k, j, i: 12 slices of 1 mm, 11 rows, 18 columns.
	if dst.Dims != [3]int{18, 11, 12} || dst.Spacing != [3]float64{1, 1, 1} {
		t.Fatalf("dims %v spacing %v", dst.Dims, dst.Spacing)
	}
	cs := src.Point([3]float64{9.5, 4.5, 2.5})
	cd := dst.Point([3]float64{8.5, 5, 5.5})
	for a := range 3 {
		if math.Abs(cs[a]-cd[a]) > 1e-9 {
			t.Fatalf("centre moved from %v to %v", cs, cd)
		}
	}
}

func TestConform(t *testing.T) {
	src := axial(40, 30, 20)
	src.Spacing = [3]float64{1, 1, 1}
	g, err := Conform(src, 256, 1, "LIA")
	if err != nil {
		t.Fatal(err)
	}
	if g.Dims != [3]int{256, 256, 256} || g.Orientation() != "LIA" {
		t.Fatalf("dims %v orientation %s", g.Dims, g.Orientation())
	}
	// FreeSurfer's c_ras: conformed voxel 128 is the source's voxel dims/2.
	if got, want := g.Point([3]float64{128, 128, 128}), src.Point([3]float64{20, 15, 10}); got != want {
		t.Errorf("centre %v, want %v", got, want)
	}
	// A 1 mm source with even dims lies on the conformed voxels: labels go
	// there and back unchanged.
	labels := make([]uint8, src.Len())
	for i := range labels {
		labels[i] = uint8(1 + i%200)
	}
	conf, err := Nearest(labels, src, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Nearest(conf, g, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back, labels) {
		t.Fatal("labels changed on the way to the conformed grid and back")
	}
	data := ramp(src.Len())
	cd, _ := Linear(data, src, g, nil)
	bd, _ := Linear(cd, g, src, nil)
	if !slices.Equal(bd, data) {
		t.Fatal("values changed on the way to the conformed grid and back")
	}
}

func TestQuantiles_MatchNumpy(t *testing.T) {
	data := make([]float32, 100)
	for i := range data {
		data[i] = float32(100 - i) // 100..1, unsorted
	}
	// numpy.quantile(np.arange(1, 101), [0, .05, .5, .95, 1]) = 1, 5.95, 50.5, 95.05, 100
	got := Quantiles(data, 0, 0.05, 0.5, 0.95, 1)
	want := []float64{1, 5.95, 50.5, 95.05, 100}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-4 {
			t.Fatalf("Quantiles = %v, want %v", got, want)
		}
	}
	if data[0] != 100 {
		t.Error("Quantiles reordered its input")
	}
}

func TestQuantiles_AgreeWithSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 10, 1001, 50000} {
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(r.IntN(50)) // many equal values, as uint8-scaled volumes have
		}
		sorted := slices.Clone(data)
		slices.Sort(sorted)
		for _, q := range []float64{0, 0.01, 0.05, 0.5, 0.95, 0.999, 1} {
			pos := q * float64(n-1)
			lo := int(pos)
			want := float64(sorted[lo])
			if lo+1 < n {
				want += (float64(sorted[lo+1]) - want) * (pos - float64(lo))
			}
			if got := Quantiles(data, q)[0]; math.Abs(got-want) > 1e-4 {
				t.Fatalf("n=%d q=%v: %v, want %v", n, q, got, want)
			}
		}
	}
}

func TestIntensity(t *testing.T) {
	near := func(t *testing.T, got []float32, want []float64) {
		t.Helper()
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 1e-5 {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
	}
	t.Run("percentile", func(t *testing.T) {
		d := make([]float32, 101)
		for i := range d {
			d[i] = float32(i)
		}
		Percentile(d, 5, 95, false)
		near(t, d[:1], []float64{-5.0 / 90})
		near(t, d[100:], []float64{95.0 / 90})
		Percentile(d, 5, 95, true)
		near(t, []float32{d[0], d[50], d[100]}, []float64{0, 0.5, 1})
	})
	t.Run("zscore", func(t *testing.T) {
		d := []float32{1, 2, 3, 4}
		ZScore(d, false)
		sd := math.Sqrt(1.25)
		near(t, d, []float64{-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd})
	})
	t.Run("zscore foreground", func(t *testing.T) {
		d := []float32{0, 2, 0, 4}
		ZScore(d, true)
		near(t, d, []float64{0, -1, 0, 1})
	})
	t.Run("zscore constant", func(t *testing.T) {
		d := []float32{3, 3}
		ZScore(d, false)
		near(t, d, []float64{0, 0})
	})
	t.Run("robust255", func(t *testing.T) {
		d := make([]float32, 2000)
		for i := 1000; i < 2000; i++ {
			d[i] = float32(i - 999) // zeros, then 1..1000
		}
		lo, hi := RobustRange(d, 99.9)
		// numpy.quantile(1..1000, 0.999) = 999.001
		if lo != 0 || math.Abs(hi-999.001) > 1e-3 {
			t.Fatalf("RobustRange = %v, %v", lo, hi)
		}
		Scale255(d, lo, hi)
		near(t, []float32{d[0], d[1000], d[1999]}, []float64{0, 0, 255})
		if d[1999] != 255 || d[1500] != float32(math.RoundToEven(501*255/999.001)) {
			t.Errorf("scaled values %v %v", d[1999], d[1500])
		}
	})
	t.Run("minmax", func(t *testing.T) {
		d := []float32{-10, 0, 10}
		MinMax(d)
		near(t, d, []float64{0, 0.5, 1})
	})
}

func TestLargestComponent(t *testing.T) {
	dims := [3]int{6, 5, 4}
	at := func(i, j, k int) int { return i + dims[0]*(j+dims[1]*k) }
	l := make([]uint8, dims[0]*dims[1]*dims[2])
	// A diagonal chain of 3 voxels (connected only through corners) with two
	// labels, and a lone 2-voxel blob elsewhere.
	l[at(0, 0, 0)], l[at(1, 1, 1)], l[at(2, 2, 2)] = 1, 2, 1
	l[at(5, 0, 3)], l[at(5, 1, 3)] = 1, 1
	cleared := LargestComponent(l, dims)
	if cleared != 2 {
		t.Errorf("cleared %d voxels, want 2", cleared)
	}
	if l[at(0, 0, 0)] != 1 || l[at(1, 1, 1)] != 2 || l[at(2, 2, 2)] != 1 {
		t.Error("the corner-connected chain was not kept whole, with its labels")
	}
	if l[at(5, 0, 3)] != 0 || l[at(5, 1, 3)] != 0 {
		t.Error("the smaller blob was kept")
	}
}

func TestForeground_ExtractPaste(t *testing.T) {
	dims := [3]int{10, 8, 6}
	d := make([]float32, dims[0]*dims[1]*dims[2])
	at := func(i, j, k int) int { return i + dims[0]*(j+dims[1]*k) }
	d[at(3, 2, 1)], d[at(6, 5, 4)], d[at(9, 0, 0)] = 5, 10, 0.4
	b, ok := Foreground(d, dims, 0.5, 2)
	if !ok {
		t.Fatal("no foreground")
	}
	if want := (Box{Lo: [3]int{1, 0, 0}, Hi: [3]int{9, 8, 6}}); b != want {
		t.Errorf("box %+v, want %+v", b, want)
	}
	part := Extract(d, dims, b)
	if len(part) != 8*8*6 || part[2+8*(2+8*1)] != 5 {
		t.Fatal("Extract lost the voxel")
	}
	back := make([]float32, len(d))
	Paste(back, dims, b, part)
	if back[at(3, 2, 1)] != 5 || back[at(6, 5, 4)] != 10 || back[at(9, 0, 0)] != 0 {
		t.Error("Paste put voxels elsewhere")
	}
	if _, ok := Foreground(d, dims, 100, 0); ok {
		t.Error("foreground above every voxel")
	}
}
