package preview_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanctest"
	"github.com/segbridge/segbridge/internal/preview"
	"github.com/segbridge/segbridge/internal/volume"
)

// synthetic is a small volume on an identity-less grid: the given direction
// cosines, spacing, values rising along i, and a box of label 1 and a
// smaller box of label 2 inside it, off centre.
func synthetic(dir [3][3]float64, spacing [3]float64) (*volume.Volume, []uint8) {
	v := &volume.Volume{Geometry: volume.Geometry{Cols: 20, Rows: 16, Depth: 12, Spacing: spacing, Direction: dir}}
	n := v.Cols * v.Rows * v.Depth
	v.Data = make([]float32, n)
	labels := make([]uint8, n)
	for k := range v.Depth {
		for j := range v.Rows {
			for i := range v.Cols {
				idx := i + v.Cols*(j+v.Rows*k)
				v.Data[idx] = float32(i*10 + j)
				if i >= 3 && i < 12 && j >= 2 && j < 9 && k >= 1 && k < 8 {
					labels[idx] = 1
					if i >= 5 && i < 8 && j >= 4 && j < 6 {
						labels[idx] = 2
					}
				}
			}
		}
	}
	return v, labels
}

var testSegs = []preview.Segment{{Label: 1, Name: "one", RGB: [3]uint8{255, 200, 0}}, {Label: 2, Name: "two", RGB: [3]uint8{255, 255, 255}}}

func tinted(c [3]uint8) bool { return !(c[0] == c[1] && c[1] == c[2]) }

func rgbAt(img image.Image, x, y int) [3]uint8 {
	r, g, b, _ := img.At(x, y).RGBA()
	return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
}

// checkPlanes checks every pixel of a Planes image against the labels of the
// voxel its panel says it shows: coloured exactly where the mask is.
func checkPlanes(t *testing.T, img image.Image, lay *preview.Layout, v *volume.Volume, labels []uint8) {
	t.Helper()
	if img.Bounds().Dx() != lay.Width || img.Bounds().Dy() != lay.Height || len(lay.Panels) != 3 {
		t.Fatalf("image %v, layout %dx%d with %d panels", img.Bounds(), lay.Width, lay.Height, len(lay.Panels))
	}
	for _, p := range lay.Panels {
		masked := 0
		for y := p.Y; y < p.Y+p.Height; y++ {
			for x := p.X; x < p.X+p.Width; x++ {
				vox, ok := p.Voxel(x, y)
				if !ok {
					t.Fatalf("%s: pixel (%d,%d) inside the panel has no voxel", p.Name, x, y)
				}
				if vox[p.Fixed.Axis] != lay.Centre[p.Fixed.Axis] {
					t.Fatalf("%s: pixel (%d,%d) shows voxel %v, off the centre plane %v", p.Name, x, y, vox, lay.Centre)
				}
				in := labels[vox[0]+v.Cols*(vox[1]+v.Rows*vox[2])] != 0
				if in {
					masked++
				}
				if got := tinted(rgbAt(img, x, y)); got != in {
					t.Fatalf("%s: pixel (%d,%d) on voxel %v is tinted=%v, the mask says %v", p.Name, x, y, vox, got, in)
				}
			}
		}
		if masked == 0 || masked != p.MaskedPixels {
			t.Errorf("%s: %d masked pixels, layout says %d", p.Name, masked, p.MaskedPixels)
		}
	}
}

// position is the patient position of voxel v.
func position(g volume.Geometry, v [3]int) [3]float64 {
	var p [3]float64
	for c := range 3 {
		p[c] = g.Origin[c]
		for a := range 3 {
			p[c] += float64(v[a]) * g.Spacing[a] * g.Direction[a][c]
		}
	}
	return p
}

func TestPlanes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dir     [3][3]float64
		spacing [3]float64
	}{
		{"axial", [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}, [3]float64{1, 1, 1}},
		{"sagittal, anisotropic", [3][3]float64{{0, 1, 0}, {0, 0, -1}, {-1, 0, 0}}, [3]float64{0.9, 1.2, 3}},
		{"coronal, flipped", [3][3]float64{{-1, 0, 0}, {0, 0, -1}, {0, 1, 0}}, [3]float64{0.5, 0.5, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, labels := synthetic(tc.dir, tc.spacing)
			img, lay, err := preview.Planes(v, labels, testSegs)
			if err != nil {
				t.Fatal(err)
			}
			checkPlanes(t, img, lay, v, labels)
			if want := [3]int{7, 5, 4}; lay.Centre != want {
				t.Errorf("centre %v, want %v (the mask's centroid)", lay.Centre, want)
			}
			// Radiological orientation, checked in patient space: moving right
			// or down in a panel moves the patient position the way it must.
			for _, p := range lay.Panels {
				a, _ := p.Voxel(p.X, p.Y)
				right, _ := p.Voxel(p.X+p.Width-1, p.Y)
				down, _ := p.Voxel(p.X, p.Y+p.Height-1)
				pa, pr, pd := position(v.Geometry, a), position(v.Geometry, right), position(v.Geometry, down)
				var h, vert int // patient axis and wanted sign of right and down
				var hs, vs float64
				switch p.Name {
				case "axial":
					h, hs, vert, vs = 0, 1, 1, 1 // towards the patient's left; posterior
				case "coronal":
					h, hs, vert, vs = 0, 1, 2, -1 // left; inferior
				case "sagittal":
					h, hs, vert, vs = 1, 1, 2, -1 // posterior; inferior
				}
				if (pr[h]-pa[h])*hs <= 0 || (pd[vert]-pa[vert])*vs <= 0 {
					t.Errorf("%s: right moves %v -> %v, down %v -> %v", p.Name, pa, pr, pa, pd)
				}
				// One pixel is the same length in every panel.
				wmm := float64(p.Horizontal.N) * v.Spacing[p.Horizontal.Volume]
				if got := float64(p.Width) * p.MillimetrePer; math.Abs(got-wmm) > p.MillimetrePer {
					t.Errorf("%s: %d px x %.3f mm = %.1f mm, the plane is %.1f mm", p.Name, p.Width, p.MillimetrePer, got, wmm)
				}
			}
		})
	}
}

func TestPlanes_Errors(t *testing.T) {
	v, labels := synthetic([3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}, [3]float64{1, 1, 1})
	if _, _, err := preview.Planes(v, make([]uint8, len(labels)), testSegs); !errors.Is(err, preview.ErrEmpty) {
		t.Errorf("empty mask: %v, want ErrEmpty", err)
	}
	if _, _, err := preview.Planes(v, labels[:10], testSegs); err == nil {
		t.Error("short labels: no error")
	}
	if _, _, err := preview.Planes(v, labels, nil); !errors.Is(err, preview.ErrEmpty) {
		t.Errorf("no segments drawn: %v, want ErrEmpty", err)
	}
}

// ch2 is a small real series (ch2 every 3 mm) and its head mask (ch2 > 0).
func ch2(t *testing.T) (*fixture.Series, *volume.Volume, []uint8) {
	t.Helper()
	s := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "3", "--patient-id", "PV-1")
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var insts []*volume.Instance
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		in, err := volume.ParseInstance(b)
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, in)
	}
	v, err := volume.Assemble(insts, volume.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	labels := make([]uint8, len(v.Data))
	for i, x := range v.Data {
		if x > 0 {
			labels[i] = 1
		}
	}
	return s, v, labels
}

func TestPlanes_RealSeries(t *testing.T) {
	_, v, labels := ch2(t)
	img, lay, err := preview.Planes(v, labels, testSegs[:1])
	if err != nil {
		t.Fatal(err)
	}
	checkPlanes(t, img, lay, v, labels)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	t.Logf("ch2 planes: %dx%d, centre %v, %d bytes of PNG", lay.Width, lay.Height, lay.Centre, buf.Len())
}

type previewInfo struct {
	SOPClassUID     string   `json:"sop_class_uid"`
	Modality        string   `json:"modality"`
	ImageType       []string `json:"image_type"`
	BurnedIn        string   `json:"burned_in_annotation"`
	ConversionType  string   `json:"conversion_type"`
	Photometric     string   `json:"photometric_interpretation"`
	Rows            int      `json:"rows"`
	Columns         int      `json:"columns"`
	PatientID       string   `json:"patient_id"`
	StudyUID        string   `json:"study_instance_uid"`
	SeriesUID       string   `json:"series_instance_uid"`
	SourceSOPUID    string   `json:"source_sop_instance_uid"`
	DerivationDescr string   `json:"derivation_description"`
}

// checkSlice checks a decoded preview image (rows+CaptionHeight x cols RGB)
// against the mask of slice k: coloured exactly on the mask, grey elsewhere,
// and the caption band grey with some white text.
func checkSlice(t *testing.T, name string, rgb []byte, v *volume.Volume, labels []uint8, k int) {
	t.Helper()
	cols, rows := v.Cols, v.Rows
	if len(rgb) != cols*(rows+preview.CaptionHeight)*3 {
		t.Fatalf("%s: %d bytes of pixels, want %d", name, len(rgb), cols*(rows+preview.CaptionHeight)*3)
	}
	plane := cols * rows
	for p := range plane {
		px := [3]uint8{rgb[3*p], rgb[3*p+1], rgb[3*p+2]}
		if in := labels[k*plane+p] != 0; tinted(px) != in {
			t.Fatalf("%s: pixel (%d,%d) tinted=%v, the mask says %v", name, p%cols, p/cols, tinted(px), in)
		}
	}
	white := 0
	for p := plane; p < plane+cols*preview.CaptionHeight; p++ {
		px := [3]uint8{rgb[3*p], rgb[3*p+1], rgb[3*p+2]}
		if tinted(px) {
			t.Fatalf("%s: caption pixel %d is coloured", name, p-plane)
		}
		if px[0] > 200 {
			white++
		}
	}
	if white < 50 {
		t.Errorf("%s: the caption has %d light pixels: no text burned in?", name, white)
	}
}

// TestEncodeSeries writes the preview series of a real series, validates
// instances with dciodvfy, reads them with pydicom, and stores them in a
// real Orthanc, whose rendered preview PNG is tinted exactly on the mask.
func TestEncodeSeries(t *testing.T) {
	_, v, labels := ch2(t)
	now := func() time.Time { return time.Date(2026, 1, 20, 10, 0, 0, 0, time.UTC) }
	res, err := preview.EncodeSeries(v, labels, testSegs[:1], preview.SeriesOptions{
		AlgorithmName: "head-threshold", AlgorithmVersion: "1.0.0", Now: now, NewUID: dicomseg.DerivedUIDs("job"),
	})
	if err != nil {
		t.Fatal(err)
	}
	plane := v.Cols * v.Rows
	withMask := 0
	for k := range v.Depth {
		for _, l := range labels[k*plane : (k+1)*plane] {
			if l != 0 {
				withMask++
				break
			}
		}
	}
	if len(res.Instances) != withMask || withMask == 0 {
		t.Fatalf("%d instances, %d slices hold mask", len(res.Instances), withMask)
	}
	again, err := preview.EncodeSeries(v, labels, testSegs[:1], preview.SeriesOptions{
		AlgorithmName: "head-threshold", AlgorithmVersion: "1.0.0", Now: now, NewUID: dicomseg.DerivedUIDs("job"),
	})
	if err != nil || !bytes.Equal(again.Instances[0].Bytes, res.Instances[0].Bytes) {
		t.Errorf("the same UID seed wrote a different first instance (err %v)", err)
	}

	dir := t.TempDir()
	for _, n := range []int{0, len(res.Instances) / 2, len(res.Instances) - 1} {
		inst := res.Instances[n]
		path := filepath.Join(dir, "preview.dcm")
		if err := os.WriteFile(path, inst.Bytes, 0o600); err != nil {
			t.Fatal(err)
		}
		errs, warns := fixture.Dciodvfy(t, path)
		if len(errs) > 0 {
			t.Errorf("dciodvfy instance %d:\n%s", n+1, strings.Join(errs, "\n"))
		}
		for _, w := range warns {
			t.Logf("dciodvfy: %s", w)
		}
		raw := filepath.Join(dir, "pixels.rgb")
		out, err := exec.Command(fixture.Python, filepath.Join(fixture.Root(t), "testdata/tools/readpreview.py"), path, raw).Output()
		if err != nil {
			t.Fatalf("readpreview.py: %v", err)
		}
		var info previewInfo
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatal(err)
		}
		if info.SOPClassUID != preview.SecondaryCaptureStorage || info.Modality != "OT" || strings.Join(info.ImageType, `\`) != `DERIVED\SECONDARY` ||
			info.BurnedIn != "YES" || info.Photometric != "RGB" || info.PatientID != "PV-1" || info.SeriesUID != res.SeriesInstanceUID ||
			info.SourceSOPUID != v.Slices[inst.Slice].SOPInstanceUID || !strings.Contains(info.DerivationDescr, "not for diagnosis") {
			t.Errorf("instance %d: %+v", n+1, info)
		}
		rgb, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		checkSlice(t, "pydicom", rgb, v, labels, inst.Slice)
	}

	t.Run("Orthanc renders it", func(t *testing.T) {
		o := orthanctest.Start(t, orthanctest.Options{})
		ctx := context.Background()
		inst := res.Instances[len(res.Instances)/2]
		path := filepath.Join(dir, "stored.dcm")
		if err := os.WriteFile(path, inst.Bytes, 0o600); err != nil {
			t.Fatal(err)
		}
		var stored struct{ ID, ParentStudy string }
		if err := postJSON(o, path, &stored); err != nil {
			t.Fatal(err)
		}
		b, err := o.Get(ctx, "/instances/"+stored.ID+"/preview")
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("Orthanc's preview is not a PNG: %v", err)
		}
		bounds := img.Bounds()
		rgb := make([]byte, 0, bounds.Dx()*bounds.Dy()*3)
		for y := range bounds.Dy() {
			for x := range bounds.Dx() {
				c := rgbAt(img, x, y)
				rgb = append(rgb, c[0], c[1], c[2])
			}
		}
		checkSlice(t, "Orthanc's preview", rgb, v, labels, inst.Slice)
	})
}

// postJSON stores a file in Orthanc and decodes its answer.
func postJSON(o *orthanctest.Server, path string, out any) error {
	ids, err := o.UploadFiles(context.Background(), []string{path})
	if err != nil {
		return err
	}
	var series struct{ Instances []string }
	if err := o.GetJSON(context.Background(), "/series/"+ids[0], &series); err != nil {
		return err
	}
	if len(series.Instances) != 1 {
		return errors.New("the preview series holds more than one instance")
	}
	return o.GetJSON(context.Background(), "/instances/"+series.Instances[0], out)
}
