package codec

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/volume"
)

// pydicomFiles are the test files Debian's python3-pydicom ships: real
// scanner images (MR_small is an MR slice from NEMA's WG04 compression test set,
// downsized)
// re-encoded by GDCM, DCMTK, Pixelmed and others, and objects that are not
// MR images at all. They were written by encoders other than the ones that
// make this repository's test series, which is why they are here.
const pydicomFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files"

// TestThirdParty_FilesOtherEncodersWrote parses files that other software
// wrote with the decoders segbridge uses (the parser, internal/jpeg, and this
// package's OpenJPEG and CharLS children) and compares their pixels with an
// independent decoding: MR_small's re-encodings with MR_small itself, exactly;
// the other compressed files with GDCM's (gdcmconv --raw), exactly when
// lossless and within 1 when lossy JPEG. Files that have pixels but no
// geometry (nuclear medicine, secondary capture) get a position and an
// orientation added by pydicom first, their pixel data untouched. Every
// other file in the folder must fail with ErrInvalidSeries and a reason,
// never a panic.
func TestThirdParty_FilesOtherEncodersWrote(t *testing.T) {
	if _, err := os.Stat(filepath.Join(pydicomFiles, "MR_small.dcm")); err != nil {
		t.Fatalf("pydicom's test files are missing (%v): run make deps (python3-pydicom)", err)
	}
	if _, err := exec.LookPath("gdcmconv"); err != nil {
		t.Fatal("gdcmconv is missing: run make deps (libgdcm-tools)")
	}
	pool := newTestPool(t, Config{})
	parser := volume.Parser{Decoder: pool}
	parse := func(t *testing.T, path string) *volume.Instance {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		in, err := parser.ParseInstance(context.Background(), data)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(path), err)
		}
		return in
	}
	planes := func(in *volume.Instance) [][]float32 {
		return planePixels(map[string]*volume.Instance{"": in})
	}

	t.Run("MR_small's re-encodings decode to MR_small", func(t *testing.T) {
		want := planes(parse(t, filepath.Join(pydicomFiles, "MR_small.dcm")))
		for _, name := range []string{
			"MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_RLE.dcm",
			"MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
			"MR_small_padded.dcm", // 128 bytes of padding after the pixels
		} {
			got := planes(parse(t, filepath.Join(pydicomFiles, name)))
			if maxAbs, _, _ := difference(t, got, want); maxAbs != 0 {
				t.Errorf("%s differs from MR_small.dcm by up to %g", name, maxAbs)
			}
		}
	})

	t.Run("compressed files decode as GDCM decodes them", func(t *testing.T) {
		for _, c := range []struct {
			name string
			// geometry: the file has none; add it.
			geometry bool
			// tolerance is the largest difference allowed from GDCM's
			// decoding: 0 for lossless, and for lossy JPEG 2000, which both
			// decode with OpenJPEG.
			tolerance float64
		}{
			{name: "693_J2KI.dcm"},              // lossy JPEG 2000, signed 14-bit CT
			{name: "J2K_pixelrep_mismatch.dcm"}, // codestream signedness differs from the header
			{name: "JPEG2000.dcm", geometry: true},
			{name: "JPGExtended.dcm", geometry: true, tolerance: 1}, // 12-bit extended JPEG
			{name: "JPEG-lossy.dcm", geometry: true, tolerance: 1},  // the same, its scan header's Se 0
			{name: "image_dfl.dcm", geometry: true},                 // deflated dataset
			{name: "CT_small.dcm"},
		} {
			t.Run(c.name, func(t *testing.T) {
				src := filepath.Join(pydicomFiles, c.name)
				dir := t.TempDir()
				raw := filepath.Join(dir, "raw.dcm")
				if b, err := exec.Command("gdcmconv", "--raw", src, raw).CombinedOutput(); err != nil {
					t.Fatalf("gdcmconv --raw: %v\n%s", err, b)
				}
				if c.geometry {
					src, raw = addGeometry(t, src, dir), addGeometry(t, raw, dir)
				}
				got, want := planes(parse(t, src)), planes(parse(t, raw))
				maxAbs, rms, span := difference(t, got, want)
				if maxAbs > c.tolerance {
					t.Errorf("differs from GDCM's decoding by up to %g (RMS %.3g), want at most %g", maxAbs, rms, c.tolerance)
				}
				t.Logf("%d planes: largest difference from GDCM %g, RMS %.3g, value range %g", len(got), maxAbs, rms, span)
			})
		}
	})

	t.Run("everything else is refused with a reason", func(t *testing.T) {
		reasons := map[string]string{
			"SC_rgb_jpeg_gdcm.dcm":                     "colour images are not supported",
			"SC_rgb_rle_16bit.dcm":                     "colour images are not supported",
			"GDCMJ2K_TextGBR.dcm":                      "colour images are not supported",
			"MR_truncated.dcm":                         "runs past the end of its container",
			"JPEG2000-embedded-sequence-delimiter.dcm": "JPEG 2000 decoder: not a valid JPEG 2000 codestream",
			"liver_1frame.dcm":                         "BitsAllocated 1 is not supported",
			"rtdose.dcm":                               "multi-frame image without per-frame functional groups",
			"test-SR.dcm":                              "not an image",
			"rtplan.dcm":                               "not an image",
			"waveform_ecg.dcm":                         "not an image",
			"no_meta.dcm":                              "not a DICOM Part-10 file",
			// A GE private sequence written as UN of undefined length: read
			// as PS3.5 6.2.2 says; the file holds nothing else.
			"UN_sequence.dcm": "SOPInstanceUID is missing",
		}
		files, _ := filepath.Glob(filepath.Join(pydicomFiles, "*.dcm"))
		seen := 0
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, err := parser.ParseInstance(context.Background(), data)
			name := filepath.Base(f)
			switch {
			case err == nil:
				if _, refused := reasons[name]; refused {
					t.Errorf("%s parsed (%dx%d), want it refused", name, in.Cols, in.Rows)
				}
				continue
			case !errors.Is(err, volume.ErrInvalidSeries):
				t.Errorf("%s: %v does not wrap ErrInvalidSeries", name, err)
			case strings.Contains(err.Error(), "parser failed") || strings.Contains(err.Error(), "panicked"):
				t.Errorf("%s: a panic, not a reason: %v", name, err)
			}
			if want, ok := reasons[name]; ok {
				seen++
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: %v, want it to say %q", name, err, want)
				}
			}
		}
		if seen != len(reasons) {
			t.Errorf("%d of the %d files with a known reason were refused", seen, len(reasons))
		}
	})
}

// addGeometry writes a copy of the file at path into dir with the attributes
// of an axial slice that the parser needs and the file lacks, its pixel data
// as it was.
func addGeometry(t *testing.T, path, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "geometry-"+filepath.Base(path))
	script := `import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
ds.ImagePositionPatient = [0, 0, 0]
ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
if "PixelSpacing" not in ds:
    ds.PixelSpacing = [1, 1]
if "FrameOfReferenceUID" not in ds:
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
if "SeriesInstanceUID" not in ds:
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
if int(getattr(ds, "NumberOfFrames", 1) or 1) == 1 and "NumberOfFrames" in ds:
    del ds.NumberOfFrames
ds.save_as(sys.argv[2])`
	if b, err := exec.Command(fixture.Python, "-c", script, path, out).CombinedOutput(); err != nil {
		t.Fatalf("add geometry to %s: %v\n%s", filepath.Base(path), err, b)
	}
	return out
}
