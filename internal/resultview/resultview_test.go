package resultview_test

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/orthanctest"
	"github.com/segbridge/segbridge/internal/resultview"
	"github.com/segbridge/segbridge/internal/volume"
	"github.com/segbridge/segbridge/internal/worker"
)

// stored is a series in Orthanc with a SEG of its head (ch2 > 0).
type stored struct {
	seriesID, segID string
	vol             *volume.Volume
	labels          []uint8
}

func storeWithSEG(t *testing.T, o *orthanctest.Server, c *orthanc.Client, patient string) stored {
	t.Helper()
	ctx := context.Background()
	s := fixture.MakeSeries(t, false, "--plane", "sagittal", "--step", "4", "--patient-id", patient)
	ids, err := o.Upload(ctx, s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(s.Dir)
	var insts []*volume.Instance
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		in, err := volume.ParseInstance(b)
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, in)
	}
	vol, err := volume.Assemble(insts, volume.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	labels := make([]uint8, len(vol.Data))
	for i, x := range vol.Data {
		if x > 0 {
			labels[i] = 1
		}
	}
	segs := []dicomseg.Segment{{Label: 1, Name: "Head", RGB: [3]uint8{255, 200, 0},
		Category: dicomseg.Code{Value: "123037004", Scheme: "SCT", Meaning: "Anatomical Structure"},
		Type:     dicomseg.Code{Value: "69536005", Scheme: "SCT", Meaning: "Head"}}}
	res, err := dicomseg.Encode(vol, labels, segs, dicomseg.Options{AlgorithmName: "head-threshold", AlgorithmVersion: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Store(ctx, res.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return stored{seriesID: ids[0], segID: st.ID, vol: vol, labels: labels}
}

func TestRenderer(t *testing.T) {
	o := orthanctest.Start(t, orthanctest.Options{})
	c, err := orthanc.NewClient(zerolog.Nop(), orthanc.Config{URL: o.URL, User: o.User, Password: o.Password})
	if err != nil {
		t.Fatal(err)
	}
	a := storeWithSEG(t, o, c, "RV-A")
	r, err := resultview.New(c, resultview.Config{Load: func(ctx context.Context, id string) (*volume.Volume, error) {
		return worker.LoadSeries(ctx, c, id, volume.Limits{}, nil, 4)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	res, err := r.Render(ctx, a.seriesID, a.segID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range a.labels {
		if l != 0 {
			n++
		}
	}
	ml := a.vol.Spacing[0] * a.vol.Spacing[1] * a.vol.Spacing[2] / 1000
	if len(res.Segments) != 1 || res.Segments[0].Voxels != n || math.Abs(res.Segments[0].VolumeML-float64(n)*ml) > 1e-9 ||
		res.Segments[0].Name != "Head" || res.Segments[0].Colour != "#ffc800" || res.Algorithm != "head-threshold" {
		t.Fatalf("segments %+v (want %d voxels, %.3f mL), algorithm %s", res.Segments, n, float64(n)*ml, res.Algorithm)
	}
	img, err := png.Decode(bytes.NewReader(res.PNG))
	if err != nil {
		t.Fatalf("preview is not a PNG: %v", err)
	}
	// Every pixel is coloured exactly where the mask is, on the voxel the
	// layout says the pixel shows.
	for _, p := range res.Preview.Panels {
		for y := p.Y; y < p.Y+p.Height; y++ {
			for x := p.X; x < p.X+p.Width; x++ {
				v, _ := p.Voxel(x, y)
				in := a.labels[v[0]+a.vol.Cols*(v[1]+a.vol.Rows*v[2])] != 0
				cr, cg, cb, _ := img.At(x, y).RGBA()
				if tinted := !(cr == cg && cg == cb); tinted != in {
					t.Fatalf("%s pixel (%d,%d): tinted %v, mask %v", p.Name, x, y, tinted, in)
				}
			}
		}
	}
	again, err := r.Render(ctx, a.seriesID, a.segID)
	if err != nil || again != res {
		t.Errorf("second render: %p %v, want the kept result %p", again, err, res)
	}

	t.Run("a SEG of another series", func(t *testing.T) {
		b := storeWithSEG(t, o, c, "RV-B")
		if _, err := r.Render(ctx, a.seriesID, b.segID); !errors.Is(err, resultview.ErrMismatch) {
			t.Errorf("Render = %v, want ErrMismatch", err)
		}
	})
	t.Run("not a SEG", func(t *testing.T) {
		var ser struct{ Instances []string }
		if err := o.GetJSON(ctx, "/series/"+a.seriesID, &ser); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Render(ctx, a.seriesID, ser.Instances[0]); !errors.Is(err, dicomseg.ErrNotReadable) {
			t.Errorf("Render of an MR instance = %v, want ErrNotReadable", err)
		}
	})
}
