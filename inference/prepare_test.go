package inference

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
)

// synthVolume is a head-like volume: a bright, textured ellipsoid on air
// (0), with a bright cap, on a grid turned by tilt radians.
func synthVolume(dims [3]int, spacing [3]float64, tilt float64, offset float32, seed uint64) *volume.Volume {
	rng := rand.New(rand.NewPCG(seed, 11))
	c, s := math.Cos(tilt), math.Sin(tilt)
	v := &volume.Volume{Geometry: volume.Geometry{
		Cols: dims[0], Rows: dims[1], Depth: dims[2], Spacing: spacing,
		Origin:    [3]float64{-40, -50, 20},
		Direction: [3][3]float64{{c, s, 0}, {-s, c, 0}, {0, 0, 1}},
	}, Data: make([]float32, dims[0]*dims[1]*dims[2]), Modality: "MR"}
	for k := range dims[2] {
		for j := range dims[1] {
			for i := range dims[0] {
				x := (float64(i) - float64(dims[0])/2) / (0.42 * float64(dims[0]))
				y := (float64(j) - float64(dims[1])/2) / (0.4 * float64(dims[1]))
				z := (float64(k) - float64(dims[2])/2) / (0.45 * float64(dims[2]))
				val := 0.0
				if r := x*x + y*y + z*z; r < 1 {
					val = math.Round(300 + 200*math.Cos(4*x)*math.Sin(3*y+z) + 30*rng.NormFloat64())
					if x > 0.8 { // fat: the brightest 0.5%
						val = 3000
					}
				}
				v.Data[i+dims[0]*(j+dims[1]*k)] = float32(val) + offset
			}
		}
	}
	return v
}

// prepareManifests are the geometry and intensity combinations prepare
// takes different paths for, as edits of the reference model's manifest.
func prepareManifests() map[string]func(m *model.Manifest) {
	conform := func(scale model.IntensityMethod) *model.Conform {
		return &model.Conform{Size: 80, VoxelSize: 1.25, Orientation: "LIA", Scale: scale}
	}
	return map[string]func(m *model.Manifest){
		"conform, minmax, crop above 0": func(m *model.Manifest) {
			m.Preprocess.Geometry.Conform = conform(model.IntensityRobust255)
			m.Preprocess.Geometry.Crop = &model.Crop{AutoThreshold: 0, Padding: 5}
		},
		"conform, minmax, crop above half": func(m *model.Manifest) {
			m.Preprocess.Geometry.Conform = conform(model.IntensityRobust255)
			m.Preprocess.Geometry.Crop = &model.Crop{AutoThreshold: 0.5, Padding: 7}
		},
		"conform, minmax, tight crop": func(m *model.Manifest) {
			m.Preprocess.Geometry.Conform = conform(model.IntensityRobust255)
			m.Preprocess.Geometry.Crop = &model.Crop{AutoThreshold: 0, Padding: 0}
		},
		"conform, minmax, no crop": func(m *model.Manifest) {
			m.Preprocess.Geometry.Conform = conform(model.IntensityRobust255)
		},
		"conform, zscore, crop": func(m *model.Manifest) {
			m.Preprocess.Geometry.Conform = conform(model.IntensityRobust255)
			m.Preprocess.Geometry.Crop = &model.Crop{AutoThreshold: 0.1, Padding: 3}
			m.Preprocess.Intensity = model.Intensity{Method: model.IntensityZScore}
		},
		"conform, percentile": func(m *model.Manifest) {
			m.Preprocess.Geometry.Conform = conform(model.IntensityRobust255)
			m.Preprocess.Intensity = model.Intensity{Method: model.IntensityPercentile, Lower: ptr(5.0), Upper: ptr(95.0)}
		},
		"conform unscaled, minmax, crop": func(m *model.Manifest) {
			m.Preprocess.Geometry.Conform = conform(model.IntensityNone)
			m.Preprocess.Geometry.Crop = &model.Crop{AutoThreshold: 0.2, Padding: 4}
		},
		"reorient and respace, crop": func(m *model.Manifest) {
			m.Preprocess.Geometry.Orientation = "LIA"
			m.Preprocess.Geometry.Spacing = []float64{1.3, 1.1, 0.9}
			m.Preprocess.Geometry.Crop = &model.Crop{AutoThreshold: 0, Padding: 2}
		},
		"own grid, crop": func(m *model.Manifest) {
			m.Preprocess.Geometry.Crop = &model.Crop{AutoThreshold: 0.05, Padding: 2}
		},
		"own grid, fixed window": func(m *model.Manifest) {
			m.Preprocess.Intensity = model.Intensity{Method: model.IntensityFixed, Min: ptr(100.0), Max: ptr(500.0)}
		},
		"own grid": func(m *model.Manifest) {},
	}
}

// samePrepared fails unless got and want are the same model input.
func samePrepared(t *testing.T, got, want *prepared) {
	t.Helper()
	if got.grid != want.grid || got.same != want.same || got.box != want.box || got.crop != want.crop {
		t.Fatalf("prepared grid %v same %v box %v crop %v; want %v %v %v %v",
			got.grid.Dims, got.same, got.box, got.crop, want.grid.Dims, want.same, want.box, want.crop)
	}
	if len(got.data) != len(want.data) {
		t.Fatalf("%d values, want %d", len(got.data), len(want.data))
	}
	for i := range want.data {
		if math.Float32bits(got.data[i]) != math.Float32bits(want.data[i]) {
			t.Fatalf("value %d is %v, want %v", i, got.data[i], want.data[i])
		}
	}
}

// sameFinish runs finish and finishReference on the same made-up labels of
// the box and fails unless they give the same labels on the series' grid.
func sameFinish(t *testing.T, m *model.Model, p *prepared, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	labels := make([]uint8, len(p.data))
	for i, x := range p.data {
		// Blobs where the input is bright, and some noise.
		if x > 0.3 || rng.IntN(200) == 0 {
			labels[i] = uint8(1 + rng.IntN(2))
		}
	}
	want, err := finishReference(m, p, slices.Clone(labels), noStep)
	if err != nil {
		t.Fatal(err)
	}
	got, err := finish(m, p, slices.Clone(labels), noStep)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		diff := 0
		for i := range want {
			if got[i] != want[i] {
				diff++
			}
		}
		t.Fatalf("finish differs from before in %d of %d labels", diff, len(want))
	}
}

func TestPrepare_SameAsBefore(t *testing.T) {
	volumes := map[string]*volume.Volume{
		"axial":         synthVolume([3]int{60, 66, 50}, [3]float64{1, 1, 1.2}, 0, 0, 1),
		"oblique":       synthVolume([3]int{57, 49, 31}, [3]float64{0.9, 1.1, 2}, 0.35, 0, 2),
		"offset":        synthVolume([3]int{40, 44, 36}, [3]float64{1, 1, 1}, 0.1, -200, 3),
		"no air":        synthVolume([3]int{120, 120, 100}, [3]float64{1, 1, 1}, 0, 50, 4),
		"one slice":     synthVolume([3]int{70, 64, 1}, [3]float64{1, 1, 3}, 0, 0, 5),
		"empty":         synthVolume([3]int{20, 20, 20}, [3]float64{1, 1, 1}, 0, 0, 6),
		"constant 7":    synthVolume([3]int{20, 20, 20}, [3]float64{1, 1, 1}, 0, 7, 7),
		"huge values":   synthVolume([3]int{30, 30, 30}, [3]float64{1, 1, 1}, 0.2, 1e35, 8),
		"ch2-like size": synthVolume([3]int{91, 109, 91}, [3]float64{2, 2, 2}, 0, 0, 9),
	}
	clear(volumes["empty"].Data)
	for i := range volumes["constant 7"].Data {
		volumes["constant 7"].Data[i] = 7
	}
	for vname, v := range volumes {
		for mname, edit := range prepareManifests() {
			t.Run(vname+"/"+mname, func(t *testing.T) {
				m := withManifest(t, edit)
				want, err := prepareReference(m, v, noStep)
				if err != nil {
					t.Fatal(err)
				}
				got, err := prepare(m, v, false, noStep)
				if err != nil {
					t.Fatal(err)
				}
				samePrepared(t, got, want)
				m.Output.LargestComponent = true
				sameFinish(t, m, got, 1)
				m.Output.LargestComponent = false
				sameFinish(t, m, got, 2)
			})
		}
	}
}

// TestPrepare_CH2 holds prepare and finish to the code they replaced on the
// full-resolution ch2 series with every committed brainchop manifest, and
// checks that the conformed models resample only around the head.
func TestPrepare_CH2(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	v := ch2Volume(t)
	for _, name := range []string{"model5_gw_ae", "model11_gw_ae", "mindgrab", "model21_104class"} {
		t.Run(name, func(t *testing.T) {
			m := brainchopModel(t, name)
			want, err := prepareReference(m, v, noStep)
			if err != nil {
				t.Fatal(err)
			}
			got, err := prepare(m, v, false, noStep)
			if err != nil {
				t.Fatal(err)
			}
			samePrepared(t, got, want)
			whole := got.grid.Len()
			t.Logf("%s: model input %v of a %v grid; resampled %d of %d voxels (%.0f%%)",
				name, got.box.Dims(), got.grid.Dims, got.resampled, whole, 100*float64(got.resampled)/float64(whole))
			if got.resampled >= whole {
				t.Errorf("resampled the whole grid (%d voxels) for a crop of %d", whole, len(got.data))
			}
			sameFinish(t, m, got, 3)
		})
	}
}

func TestPrepare_Fallbacks(t *testing.T) {
	// A series that fills the conformed grid has no air: the box cannot
	// show the grid's minimum, so the whole grid is resampled.
	v := synthVolume([3]int{120, 120, 100}, [3]float64{1, 1, 1}, 0, 50, 4)
	m := withManifest(t, prepareManifests()["conform, minmax, crop above 0"])
	p, err := prepare(m, v, false, noStep)
	if err != nil {
		t.Fatal(err)
	}
	if p.resampled != p.grid.Len() {
		t.Errorf("resampled %d voxels of %d with no air in the box", p.resampled, p.grid.Len())
	}
	// A head in air resamples only around itself.
	v = synthVolume([3]int{60, 66, 50}, [3]float64{1, 1, 1.2}, 0, 0, 1)
	if p, err = prepare(m, v, false, noStep); err != nil {
		t.Fatal(err)
	}
	if p.resampled >= p.grid.Len() {
		t.Errorf("resampled the whole grid (%d voxels) around a head", p.resampled)
	}
}

// TestPrepare_ReuseVoxels: with the volume's voxels to reuse, a model on
// the series' own grid gets the same input, normalised in place; one that
// resamples leaves them alone.
func TestPrepare_ReuseVoxels(t *testing.T) {
	v := synthVolume([3]int{40, 44, 36}, [3]float64{1, 1, 1}, 0.1, 0, 3)
	for _, name := range []string{"own grid", "own grid, crop", "own grid, fixed window", "conform, minmax, crop above 0"} {
		t.Run(name, func(t *testing.T) {
			m := withManifest(t, prepareManifests()[name])
			want, err := prepare(m, v, false, noStep)
			if err != nil {
				t.Fatal(err)
			}
			mine := *v
			mine.Data = slices.Clone(v.Data)
			got, err := prepare(m, &mine, true, noStep)
			if err != nil {
				t.Fatal(err)
			}
			samePrepared(t, got, want)
			inPlace := len(got.data) == len(mine.Data) && &got.data[0] == &mine.Data[0]
			if want.same && !want.crop && !inPlace {
				t.Error("the model's input is a copy, not the reused voxels")
			}
			if !want.same && !slices.Equal(mine.Data, v.Data) {
				t.Error("a resampling model changed the volume's voxels")
			}
		})
	}
}
