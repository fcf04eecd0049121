package inference

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// decideReference is decider.decide as it was, voxel by voxel.
func (d *decider) decideReference(data []float32, n, stride int, out []uint8) {
	for p := range n {
		best, bestC := data[p], 0
		for c := 1; c < d.channels; c++ {
			if x := data[c*stride+p]; x > best {
				best, bestC = x, c
			}
		}
		if d.thresholded && !(best >= d.threshold) {
			out[p] = 0
			continue
		}
		out[p] = d.label[bestC]
	}
}

// randomOutput is channels x n values with ties and NaNs.
func randomOutput(channels, n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	data := make([]float32, channels*n)
	for i := range data {
		switch rng.IntN(20) {
		case 0:
			data[i] = float32(math.NaN())
		case 1, 2, 3:
			data[i] = 1 // ties
		default:
			data[i] = float32(rng.NormFloat64())
		}
	}
	return data
}

func TestDecider_SameAsBefore(t *testing.T) {
	for _, d := range []*decider{
		{channels: 1, thresholded: true, threshold: 0.5, label: []uint8{1}},
		{channels: 3, label: []uint8{0, 1, 1}},
		{channels: 2, thresholded: true, threshold: 0.2, label: []uint8{1, 2}},
		{channels: 300, label: func() []uint8 {
			l := make([]uint8, 300)
			for i := range l {
				l[i] = uint8(i % 200)
			}
			return l
		}()},
	} {
		for _, n := range []int{1, 2047, 2049, 70001} {
			// A stride larger than n, as a slab of a bigger output has.
			stride := n + 13
			data := randomOutput(d.channels, stride, uint64(n))
			want := make([]uint8, n)
			d.decideReference(data, n, stride, want)
			got := make([]uint8, n)
			d.decide(data, n, stride, got)
			if !slices.Equal(got, want) {
				t.Errorf("%d channels, %d voxels: labels differ", d.channels, n)
			}
		}
	}
}

// BenchmarkDecide labels a crop of a head (11 million voxels) from 3
// channels, and a slab of one (600 000 voxels) from 104.
func BenchmarkDecide(b *testing.B) {
	for _, c := range []struct {
		name        string
		channels, n int
	}{{"3 channels", 3, 11_000_000}, {"104 channels", 104, 600_000}} {
		b.Run(c.name, func(b *testing.B) {
			d := &decider{channels: c.channels, label: make([]uint8, c.channels)}
			data := randomOutput(c.channels, c.n, 1)
			out := make([]uint8, c.n)
			b.SetBytes(int64(4 * len(data)))
			for b.Loop() {
				d.decide(data, c.n, c.n, out)
			}
		})
	}
}
