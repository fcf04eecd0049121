package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
)

// threshold is threshold.yaml's output.threshold: the model labels the voxels
// whose modality value reaches it.
const threshold = 60

// TestDICOM_EndToEnd runs issue 3's acceptance tests against a real Orthanc
// and `segbridge serve` with the threshold model: broken series fail with
// their reason and the worker goes on; series in every plane, classic and
// enhanced, with shuffled instance numbers and a rescale, come back as SEGs
// that pydicom and dcmjs read as exactly the threshold of the source voxels;
// compressed twins are segmented exactly as their source.
func TestDICOM_EndToEnd(t *testing.T) {
	root := fixture.Root(t)
	node := requireDcmjs(t)
	s := setupSystem(t, map[string]string{
		"MODEL_PATH": filepath.Join(root, "testdata/models/threshold.yaml"),
		// Above every good series below (the largest, oblique at 2 mm, is
		// about 2M voxels), below full-resolution ch2 (7.1M).
		"SEGBRIDGE_MAX_VOXELS": "4000000",
	})

	// Rejections first, so that the good series after them show that the
	// worker still takes jobs.
	t.Run("rejections show their reason", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"mixed orientations", []string{"--defect", "mixed-orientation"}, "the series mixes orientations"},
			{"several stacks", []string{"--defect", "two-stacks"}, "slices do not form one stack"},
			{"duplicate positions", []string{"--defect", "duplicate"}, "duplicate slices"},
			{"uneven gaps", []string{"--defect", "gap"}, "uneven slice spacing"},
			{"4-D echoes", []string{"--echoes", "2"}, "4-D series"},
			// Nothing to segment is not a failure: skipped (see
			// TestHardening_ASeriesOfNonImagesIsSkipped).
			{"non-image objects", []string{"--defect", "no-pixels"}, "holds no images"},
			{"JPEG 2000 with a garbage codestream", []string{"--defect", "j2k"}, "JPEG 2000 decoder: not a valid JPEG 2000 codestream"},
			{"over the configured voxel limit", []string{"--step", "1"}, "exceeds the limit of 4000000"},
		}
		ids := make([]string, len(cases))
		for i, c := range cases {
			ser := fixture.MakeSeries(t, false, append([]string{"--step", "6", "--patient-id", fmt.Sprintf("REJ%d", i),
				"--seed", fmt.Sprint(100 + i)}, c.args...)...)
			ids[i] = s.upload(t, ser.Dir)
		}
		for i, c := range cases {
			v := s.waitFinal(t, ids[i], 90*time.Second)
			want := "failed"
			if c.name == "non-image objects" {
				want = "skipped"
			}
			if v.State != want || len(v.Jobs) == 0 || !strings.Contains(v.Jobs[0].Error, c.want) {
				t.Errorf("%s: state %s %+v, want %s with %q", c.name, v.State, v.Jobs, want, c.want)
				continue
			}
			t.Logf("%s: %s", c.name, v.Jobs[0].Error)
		}
	})

	t.Run("every plane, classic and enhanced, voxel for voxel", func(t *testing.T) {
		common := []string{"--shuffle", "--slope", "2", "--intercept", "-50"}
		cases := []struct {
			name string
			args []string
		}{
			{"axial", []string{"--plane", "axial", "--step", "2"}},
			{"sagittal", []string{"--plane", "sagittal", "--step", "2"}},
			{"coronal", []string{"--plane", "coronal", "--step", "2"}},
			{"oblique 15 deg", []string{"--plane", "oblique", "--tilt-deg", "15", "--step", "2"}},
			{"enhanced MR shared groups", []string{"--plane", "coronal", "--step", "3", "--enhanced"}},
			{"enhanced MR per-frame groups", []string{"--plane", "oblique", "--tilt-deg", "-12", "--step", "3",
				"--enhanced", "--enhanced-groups", "perframe"}},
		}
		series := make([]*fixture.Series, len(cases))
		ids := make([]string, len(cases))
		for i, c := range cases {
			series[i] = fixture.MakeSeries(t, false, append(append([]string{"--patient-id", fmt.Sprintf("ACC%d", i),
				"--seed", fmt.Sprint(200 + i)}, common...), c.args...)...)
			ids[i] = s.upload(t, series[i].Dir)
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				v := s.waitFinal(t, ids[i], 120*time.Second)
				if v.State != "done" {
					t.Fatalf("state %s: %+v", v.State, v.Jobs)
				}
				path := s.segFile(t, v.Jobs[0].SEGSeriesID)
				want := thresholdMask(series[i])
				checkThresholdSEG(t, path, series[i], want, bySOPAndFrame(series[i]))
				checkDcmjs(t, node, path, series[i], want)
			})
		}
	})

	t.Run("compressed twins are segmented as their source", func(t *testing.T) {
		src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "3", "--shuffle", "--slope", "2",
			"--intercept", "-50", "--patient-id", "TWIN", "--seed", "300")
		id := s.upload(t, src.Dir)
		v := s.waitFinal(t, id, 90*time.Second)
		if v.State != "done" {
			t.Fatalf("source: state %s: %+v", v.State, v.Jobs)
		}
		want := thresholdMask(src)
		srcMask := checkThresholdSEG(t, s.segFile(t, v.Jobs[0].SEGSeriesID), src, want, bySOPAndFrame(src))
		for _, ts := range []struct{ name, uid string }{
			{"JPEG lossless", "1.2.840.10008.1.2.4.70"},
			{"JPEG-LS lossless", "1.2.840.10008.1.2.4.80"},
		} {
			t.Run(ts.name, func(t *testing.T) {
				twin := s.transcodeSeries(t, id, ts.uid)
				v := s.waitFinal(t, twin, 90*time.Second)
				if v.State != "done" {
					t.Fatalf("twin: state %s: %+v", v.State, v.Jobs)
				}
				// The twin has new SOPInstanceUIDs: map frames by position.
				got := checkThresholdSEG(t, s.segFile(t, v.Jobs[0].SEGSeriesID), src, want, byPosition(src))
				if !bytes.Equal(got, srcMask) {
					t.Errorf("the %s twin's SEG differs from its source's", ts.name)
				}
			})
		}
	})
}

// waitFinal polls the status until the series' job is done or failed.
func (s *system) waitFinal(t *testing.T, id string, within time.Duration) seriesView {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, v := s.seriesStatus(t, id)
		if code == http.StatusOK && (v.State == "done" || v.State == "failed" || v.State == "skipped" || v.State == "cancelled") {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("series %s not finished within %s: %d %+v", id, within, code, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// segFile downloads the one instance of a SEG series into a temporary file.
func (s *system) segFile(t *testing.T, segSeriesID string) string {
	t.Helper()
	ctx := context.Background()
	var seg struct{ Instances []string }
	if err := s.orthanc.GetJSON(ctx, "/series/"+segSeriesID, &seg); err != nil {
		t.Fatal(err)
	}
	if len(seg.Instances) != 1 {
		t.Fatalf("SEG series has %d instances, want 1", len(seg.Instances))
	}
	data, err := s.orthanc.Get(ctx, "/instances/"+seg.Instances[0]+"/file")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seg.dcm")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// transcodeSeries has Orthanc store a copy of series id in transfer syntax
// ts (new series and instance UIDs) and returns the copy's id, after checking
// that its instances are stored compressed.
func (s *system) transcodeSeries(t *testing.T, id, ts string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"Transcode": ts,
		"Replace":   map[string]string{"SeriesDescription": "compressed twin " + ts},
	})
	req, _ := http.NewRequest(http.MethodPost, s.orthanc.URL+"/series/"+id+"/modify", bytes.NewReader(body))
	req.SetBasicAuth(s.orthanc.User, s.orthanc.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct{ ID string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.ID == "" {
		t.Fatalf("modify series to %s: %d %s", ts, resp.StatusCode, b)
	}
	var ser struct{ Instances []string }
	if err := s.orthanc.GetJSON(context.Background(), "/series/"+out.ID, &ser); err != nil {
		t.Fatal(err)
	}
	got, err := s.orthanc.Get(context.Background(), "/instances/"+ser.Instances[0]+"/metadata/TransferSyntax")
	if err != nil || string(got) != ts {
		t.Fatalf("twin is stored as %q (%v), want %s", got, err, ts)
	}
	return out.ID
}

// thresholdMask is what the threshold model must find: 1 where the source's
// modality value reaches the threshold, on the truth grid.
func thresholdMask(src *fixture.Series) []uint8 {
	m := make([]uint8, len(src.Values))
	for i, v := range src.Values {
		if v >= threshold {
			m[i] = 1
		}
	}
	return m
}

// segFrame is one frame as readseg.py reports it.
type segFrame struct {
	Segment           int        `json:"segment"`
	IPP               [3]float64 `json:"ipp"`
	RefSOPInstanceUID string     `json:"ref_sop_instance_uid"`
	RefFrameNumber    *int       `json:"ref_frame_number"`
}

// sliceFinder maps a SEG frame to its source slice k in the truth.
type sliceFinder func(fr segFrame) (int, bool)

func bySOPAndFrame(src *fixture.Series) sliceFinder {
	tr := readTruthFrames(src)
	return func(fr segFrame) (int, bool) {
		f := 0
		if fr.RefFrameNumber != nil {
			f = *fr.RefFrameNumber
		}
		for k, sl := range src.Truth.Slices {
			if sl.SOPInstanceUID == fr.RefSOPInstanceUID && tr[k] == f {
				return k, true
			}
		}
		return 0, false
	}
}

func byPosition(src *fixture.Series) sliceFinder {
	return func(fr segFrame) (int, bool) {
		for k, sl := range src.Truth.Slices {
			if sl.IPP == fr.IPP {
				return k, true
			}
		}
		return 0, false
	}
}

// readTruthFrames returns each truth slice's frame number (0: single-frame).
func readTruthFrames(src *fixture.Series) []int {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(src.Dir), "truth", "truth.json"))
	if err != nil {
		return make([]int, len(src.Truth.Slices))
	}
	var tj struct {
		Slices []struct {
			Frame int `json:"frame"`
		} `json:"slices"`
	}
	_ = json.Unmarshal(b, &tj)
	out := make([]int, len(src.Truth.Slices))
	for k := range out {
		if k < len(tj.Slices) {
			out[k] = tj.Slices[k].Frame
		}
	}
	return out
}

// checkThresholdSEG validates the SEG with dciodvfy, reads it back with
// pydicom (readseg.py), places every frame on its source slice, checks that
// the frame sits where that slice is, and compares the mask with want voxel
// for voxel. It returns the mask.
func checkThresholdSEG(t *testing.T, path string, src *fixture.Series, want []uint8, slice sliceFinder) []uint8 {
	t.Helper()
	errs, _ := fixture.Dciodvfy(t, path)
	if len(errs) > 0 {
		t.Errorf("dciodvfy errors:\n%s", strings.Join(errs, "\n"))
	}
	out := t.TempDir()
	if b, err := exec.Command(fixture.Python, filepath.Join(fixture.Root(t), "testdata/tools/readseg.py"), path, out).CombinedOutput(); err != nil {
		t.Fatalf("readseg.py: %v\n%s", err, b)
	}
	var seg struct {
		Rows, Cols int
		Frames     []segFrame
		Segments   []struct {
			Number int `json:"number"`
		}
		FrameOfReferenceUID string `json:"frame_of_reference_uid"`
	}
	b, err := os.ReadFile(filepath.Join(out, "seg.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &seg); err != nil {
		t.Fatal(err)
	}
	px, err := os.ReadFile(filepath.Join(out, "frames.u8"))
	if err != nil {
		t.Fatal(err)
	}
	tr := src.Truth
	if seg.Rows != tr.Rows || seg.Cols != tr.Cols || len(seg.Segments) != 1 {
		t.Fatalf("SEG is %dx%d with %d segments, want %dx%d with 1", seg.Cols, seg.Rows, len(seg.Segments), tr.Cols, tr.Rows)
	}
	plane := tr.Rows * tr.Cols
	mask := make([]uint8, plane*tr.Depth)
	for f, fr := range seg.Frames {
		k, ok := slice(fr)
		if !ok {
			t.Fatalf("frame %d (%s frame %v at %v) matches no source slice", f+1, fr.RefSOPInstanceUID, fr.RefFrameNumber, fr.IPP)
		}
		if fr.IPP != tr.Slices[k].IPP {
			t.Fatalf("frame %d: ImagePositionPatient %v, its source slice %d is at %v", f+1, fr.IPP, k, tr.Slices[k].IPP)
		}
		for p := range plane {
			mask[k*plane+p] |= px[f*plane+p]
		}
	}
	compareMasks(t, "pydicom", mask, want, tr.Cols, tr.Rows)
	return mask
}

func compareMasks(t *testing.T, reader string, got, want []uint8, cols, rows int) {
	t.Helper()
	bad, ones := 0, 0
	for i := range want {
		if want[i] != 0 {
			ones++
		}
		if (got[i] != 0) != (want[i] != 0) {
			if bad < 3 {
				k, r := i/(cols*rows), i%(cols*rows)
				t.Errorf("%s: voxel (%d,%d,%d) = %d, want %d", reader, r%cols, r/cols, k, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d voxels differ from the threshold of the source", reader, bad, len(want))
	}
	if ones == 0 || ones == len(want) {
		t.Fatalf("the threshold marks %d of %d voxels: the test proves nothing", ones, len(want))
	}
}

// requireDcmjs returns the node binary and fails when dcmjs is not installed.
func requireDcmjs(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: run make deps")
	}
	if _, err := os.Stat(filepath.Join(fixture.Root(t), ".deps/node/node_modules/dcmjs/package.json")); err != nil {
		t.Fatal("dcmjs not installed: run make deps (make deps-npm)")
	}
	return node
}

// checkDcmjs reads the SEG with dcmjs (testdata/tools/dcmjs-readseg.js):
// the segment it names, every frame's source reference, and the Cornerstone
// adapter's label map on the source stack, which must equal want.
func checkDcmjs(t *testing.T, node, path string, src *fixture.Series, want []uint8) {
	t.Helper()
	root := fixture.Root(t)
	lm := filepath.Join(t.TempDir(), "labelmap.u8")
	truth := filepath.Join(filepath.Dir(src.Dir), "truth", "truth.json")
	cmd := exec.Command(node, filepath.Join(root, "testdata/tools/dcmjs-readseg.js"), path, truth, lm)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(root, ".deps/node/node_modules"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dcmjs-readseg.js: %v\n%s", err, stderr.String())
	}
	var got struct {
		Segments []struct {
			Number int
			Label  string
		}
		Frames []struct {
			Segment           int    `json:"segment"`
			RefSOPInstanceUID string `json:"ref_sop_instance_uid"`
			RefFrameNumber    *int   `json:"ref_frame_number"`
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("dcmjs-readseg.js output: %v\n%s", err, out)
	}
	if len(got.Segments) != 1 || got.Segments[0].Number != 1 || got.Segments[0].Label == "" {
		t.Errorf("dcmjs finds segments %+v, want one, number 1, labelled", got.Segments)
	}
	frames := readTruthFrames(src)
	for f, fr := range got.Frames {
		found := false
		for k, sl := range src.Truth.Slices {
			wantFrame := frames[k]
			hasFrame := fr.RefFrameNumber != nil && *fr.RefFrameNumber == wantFrame
			if sl.SOPInstanceUID == fr.RefSOPInstanceUID && (hasFrame || (wantFrame == 0 && fr.RefFrameNumber == nil)) {
				found = true
				break
			}
		}
		if fr.Segment != 1 || !found {
			t.Fatalf("dcmjs: frame %d is segment %d of %s frame %v, not a source image", f+1, fr.Segment, fr.RefSOPInstanceUID, fr.RefFrameNumber)
		}
	}
	labels, err := os.ReadFile(lm)
	if err != nil {
		t.Fatal(err)
	}
	if len(labels) != len(want) {
		t.Fatalf("dcmjs label map has %d voxels, want %d", len(labels), len(want))
	}
	compareMasks(t, "dcmjs", labels, want, src.Truth.Cols, src.Truth.Rows)
}
