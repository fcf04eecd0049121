package dicomsr_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/dicomsr"
	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/volume"
)

// ch2 returns a small real series (ch2 every 4 mm), its volume, and labels:
// 1 for the head (ch2 > 0), 2 for the brighter half of it, so that two
// segments of different sizes are measured.
func ch2(t *testing.T) (*volume.Volume, []uint8) {
	t.Helper()
	s := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "4", "--patient-id", "SR-1")
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
		switch {
		case x > 60:
			labels[i] = 2
		case x > 0:
			labels[i] = 1
		}
	}
	return v, labels
}

func segments() []dicomseg.Segment {
	return []dicomseg.Segment{
		{Label: 1, Name: "Head", RGB: [3]uint8{255, 200, 0},
			Category: dicomseg.Code{Value: "123037004", Scheme: "SCT", Meaning: "Anatomical Structure"},
			Type:     dicomseg.Code{Value: "69536005", Scheme: "SCT", Meaning: "Head"}},
		{Label: 2, Name: "Bright tissue", RGB: [3]uint8{0, 120, 255},
			Category: dicomseg.Code{Value: "91723000", Scheme: "SCT", Meaning: "Anatomical Structure"},
			Type:     dicomseg.Code{Value: "12738006", Scheme: "SCT", Meaning: "Brain"}},
	}
}

var fixedNow = func() time.Time { return time.Date(2026, 1, 20, 10, 0, 0, 0, time.UTC) }

// encodeBoth writes the SEG and the SR of v and labels into dir.
func encodeBoth(t *testing.T, dir string, v *volume.Volume, labels []uint8) (segPath, srPath string, seg *dicomseg.Result, sr *dicomsr.Result, ms []dicomsr.Measurement) {
	t.Helper()
	segs := segments()
	seg, err := dicomseg.Encode(v, labels, segs, dicomseg.Options{AlgorithmName: "test-model", AlgorithmVersion: "1.2.3", Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	ms = dicomsr.Volumes(v, labels, segs)
	sr, err = dicomsr.Encode(v, dicomsr.SEG{SOPInstanceUID: seg.SOPInstanceUID, SeriesInstanceUID: seg.SeriesInstanceUID}, ms,
		dicomsr.Options{AlgorithmName: "test-model", AlgorithmVersion: "1.2.3", Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	segPath, srPath = filepath.Join(dir, "seg.dcm"), filepath.Join(dir, "sr.dcm")
	for p, b := range map[string][]byte{segPath: seg.Bytes, srPath: sr.Bytes} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return segPath, srPath, seg, sr, ms
}

type pyReport struct {
	SOPClassUID       string `json:"sop_class_uid"`
	SOPInstanceUID    string `json:"sop_instance_uid"`
	SeriesInstanceUID string `json:"series_instance_uid"`
	StudyInstanceUID  string `json:"study_instance_uid"`
	PatientID         string `json:"patient_id"`
	Modality          string `json:"modality"`
	Template          string `json:"template"`
	CompletionFlag    string `json:"completion_flag"`
	ObserverType      struct {
		Value string `json:"value"`
	} `json:"observer_type"`
	DeviceObserverUID string `json:"device_observer_uid"`
	Procedure         struct {
		Value, Meaning string
	} `json:"procedure_reported"`
	ImageLibrary []string `json:"image_library"`
	Evidence     []struct {
		SeriesInstanceUID string   `json:"series_instance_uid"`
		SOPInstanceUIDs   []string `json:"sop_instance_uids"`
	} `json:"evidence"`
	Groups []struct {
		Template           string `json:"template"`
		TrackingIdentifier string `json:"tracking_identifier"`
		TrackingUID        string `json:"tracking_uid"`
		FindingCategory    struct {
			Value string `json:"value"`
		} `json:"finding_category"`
		Finding struct {
			Value, Scheme, Meaning string
		} `json:"finding"`
		AlgorithmName     string `json:"algorithm_name"`
		AlgorithmVersion  string `json:"algorithm_version"`
		ReferencedSegment struct {
			SOPClassUID    string `json:"sop_class_uid"`
			SOPInstanceUID string `json:"sop_instance_uid"`
			SegmentNumber  int    `json:"segment_number"`
		} `json:"referenced_segment"`
		SourceSeriesUID string `json:"source_series_uid"`
		Volume          struct {
			Value float64 `json:"value"`
			Unit  struct {
				Value, Scheme string
			} `json:"unit"`
		} `json:"volume"`
	} `json:"groups"`
	SEGVolumesML map[string]float64 `json:"seg_volumes_ml"`
}

// TestEncode_ReadBack writes a report of a real series, validates it with
// dciodvfy, and reads it with pydicom and dcmjs: every group's volume is the
// SEG's own voxel count times its voxel volume, as pydicom measures the SEG.
func TestEncode_ReadBack(t *testing.T) {
	v, labels := ch2(t)
	dir := t.TempDir()
	segPath, srPath, seg, sr, ms := encodeBoth(t, dir, v, labels)

	for _, p := range []string{segPath, srPath} {
		errs, warns := fixture.Dciodvfy(t, p)
		if len(errs) > 0 {
			t.Errorf("dciodvfy %s:\n%s", filepath.Base(p), strings.Join(errs, "\n"))
		}
		for _, w := range warns {
			t.Logf("dciodvfy %s: %s", filepath.Base(p), w)
		}
	}

	out, err := exec.Command(fixture.Python, filepath.Join(fixture.Root(t), "testdata/tools/readsr.py"), srPath, segPath).Output()
	if err != nil {
		t.Fatalf("readsr.py: %v", errOutput(err))
	}
	var got pyReport
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("readsr.py output: %v\n%s", err, out)
	}
	if got.SOPClassUID != dicomsr.Comprehensive3DSRStorage || got.Modality != "SR" || got.Template != "1500" || got.CompletionFlag != "COMPLETE" {
		t.Errorf("header: %+v", got)
	}
	if got.SOPInstanceUID != sr.SOPInstanceUID || got.SeriesInstanceUID != sr.SeriesInstanceUID || got.PatientID != "SR-1" {
		t.Errorf("identifiers: %s %s %s", got.SOPInstanceUID, got.SeriesInstanceUID, got.PatientID)
	}
	if got.ObserverType.Value != "121007" || got.DeviceObserverUID != dicomsr.DeviceObserverUID || got.Procedure.Value != "113091000" {
		t.Errorf("observer %+v %s, procedure %+v", got.ObserverType, got.DeviceObserverUID, got.Procedure)
	}
	if len(got.ImageLibrary) != v.Depth {
		t.Errorf("image library has %d entries, the series %d instances", len(got.ImageLibrary), v.Depth)
	}
	if len(got.Evidence) != 2 || got.Evidence[0].SeriesInstanceUID != v.SeriesInstanceUID || len(got.Evidence[0].SOPInstanceUIDs) != v.Depth ||
		got.Evidence[1].SOPInstanceUIDs[0] != seg.SOPInstanceUID {
		t.Errorf("evidence %+v", got.Evidence)
	}
	if len(got.Groups) != 2 {
		t.Fatalf("%d measurement groups, want 2", len(got.Groups))
	}
	tracking := map[string]bool{}
	for i, g := range got.Groups {
		m := ms[i]
		if g.Template != "1411" || g.TrackingIdentifier != m.Segment.Name || g.TrackingUID == "" || tracking[g.TrackingUID] {
			t.Errorf("group %d: template %s, tracking %q %q", i+1, g.Template, g.TrackingIdentifier, g.TrackingUID)
		}
		tracking[g.TrackingUID] = true
		if g.Finding.Value != m.Segment.Type.Value || g.FindingCategory.Value != m.Segment.Category.Value ||
			g.AlgorithmName != "test-model" || g.AlgorithmVersion != "1.2.3" {
			t.Errorf("group %d: finding %+v, category %+v, algorithm %s %s", i+1, g.Finding, g.FindingCategory, g.AlgorithmName, g.AlgorithmVersion)
		}
		if g.ReferencedSegment.SOPInstanceUID != seg.SOPInstanceUID || g.ReferencedSegment.SegmentNumber != i+1 ||
			g.ReferencedSegment.SOPClassUID != dicomseg.SegmentationStorage || g.SourceSeriesUID != v.SeriesInstanceUID {
			t.Errorf("group %d: references %+v, source %s", i+1, g.ReferencedSegment, g.SourceSeriesUID)
		}
		if g.Volume.Unit.Value != "mL" || g.Volume.Unit.Scheme != "UCUM" {
			t.Errorf("group %d: unit %+v", i+1, g.Volume.Unit)
		}
		segML := got.SEGVolumesML[strconv.Itoa(i+1)]
		if segML <= 0 || math.Abs(g.Volume.Value-segML) > 0.001*segML {
			t.Errorf("group %d: SR says %.6f mL, the SEG's voxels x voxel volume %.6f mL (want within 0.1 %%)", i+1, g.Volume.Value, segML)
		} else {
			t.Logf("%s: SR %.3f mL, SEG %.3f mL (%d voxels)", m.Segment.Name, g.Volume.Value, segML, m.Voxels)
		}
	}

	t.Run("dcmjs", func(t *testing.T) {
		node, err := exec.LookPath("node")
		if err != nil {
			t.Fatal("node not found: run make deps")
		}
		mods := filepath.Join(fixture.Root(t), ".deps/node/node_modules")
		if _, err := os.Stat(filepath.Join(mods, "dcmjs/package.json")); err != nil {
			t.Fatal("dcmjs not installed: run make deps (make deps-npm)")
		}
		cmd := exec.Command(node, filepath.Join(fixture.Root(t), "testdata/tools/dcmjs-readsr.js"), srPath)
		cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dcmjs-readsr.js: %v", errOutput(err))
		}
		var js struct {
			SOPClassUID string `json:"sop_class_uid"`
			Template    string `json:"template"`
			Groups      []struct {
				TrackingIdentifier string  `json:"tracking_identifier"`
				SegmentNumber      int     `json:"segment_number"`
				SEGSOPInstanceUID  string  `json:"seg_sop_instance_uid"`
				SourceSeriesUID    string  `json:"source_series_uid"`
				Volume             float64 `json:"volume"`
				Unit               string  `json:"unit"`
			} `json:"groups"`
		}
		if err := json.Unmarshal(out, &js); err != nil {
			t.Fatalf("dcmjs output: %v\n%s", err, out)
		}
		if js.SOPClassUID != dicomsr.Comprehensive3DSRStorage || js.Template != "1500" || len(js.Groups) != len(ms) {
			t.Fatalf("dcmjs reads %+v", js)
		}
		for i, g := range js.Groups {
			if g.TrackingIdentifier != ms[i].Segment.Name || g.SegmentNumber != i+1 || g.SEGSOPInstanceUID != seg.SOPInstanceUID ||
				g.SourceSeriesUID != v.SeriesInstanceUID || g.Unit != "mL" || math.Abs(g.Volume-ms[i].VolumeML) > 1e-9*ms[i].VolumeML {
				t.Errorf("dcmjs group %d: %+v, want %s, %.6f mL", i+1, g, ms[i].Segment.Name, ms[i].VolumeML)
			}
		}
	})
}

func TestVolumes(t *testing.T) {
	v := &volume.Volume{Geometry: volume.Geometry{Cols: 2, Rows: 2, Depth: 1, Spacing: [3]float64{0.5, 2, 3}}}
	labels := []uint8{0, 3, 3, 1}
	segs := []dicomseg.Segment{{Label: 3, Name: "three"}, {Label: 1, Name: "one"}, {Label: 2, Name: "empty"}}
	got := dicomsr.Volumes(v, labels, segs)
	want := []struct {
		number, voxels int
		name           string
		ml             float64
	}{{1, 1, "one", 0.003}, {2, 0, "empty", 0}, {3, 2, "three", 0.006}}
	for i, w := range want {
		g := got[i]
		if g.SegmentNumber != w.number || g.Voxels != w.voxels || g.Segment.Name != w.name || math.Abs(g.VolumeML-w.ml) > 1e-15 {
			t.Errorf("measurement %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestEncode_Deterministic(t *testing.T) {
	v, labels := ch2(t)
	segs := segments()
	ms := dicomsr.Volumes(v, labels, segs)
	ref := dicomsr.SEG{SOPInstanceUID: "1.2.3.4", SeriesInstanceUID: "1.2.3.5"}
	enc := func(seed string) *dicomsr.Result {
		r, err := dicomsr.Encode(v, ref, ms, dicomsr.Options{AlgorithmName: "m", AlgorithmVersion: "1", Now: fixedNow, NewUID: dicomseg.DerivedUIDs(seed)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b, c := enc("job-1"), enc("job-1"), enc("job-2")
	if !bytes.Equal(a.Bytes, b.Bytes) {
		t.Error("the same seed wrote different reports")
	}
	if a.SOPInstanceUID == c.SOPInstanceUID || a.SeriesInstanceUID == c.SeriesInstanceUID {
		t.Error("different seeds gave the same UIDs")
	}
}

func TestEncode_Errors(t *testing.T) {
	v, labels := ch2(t)
	ms := dicomsr.Volumes(v, labels, segments())
	ref := dicomsr.SEG{SOPInstanceUID: "1.2.3.4", SeriesInstanceUID: "1.2.3.5"}
	opts := dicomsr.Options{AlgorithmName: "m", AlgorithmVersion: "1"}
	bad := ms[0]
	bad.VolumeML = math.NaN()
	noCode := ms[0]
	noCode.Segment.Type = dicomseg.Code{}
	for _, tc := range []struct {
		name string
		v    *volume.Volume
		seg  dicomsr.SEG
		ms   []dicomsr.Measurement
		opts dicomsr.Options
	}{
		{"no volume", nil, ref, ms, opts},
		{"no SEG", v, dicomsr.SEG{}, ms, opts},
		{"no measurements", v, ref, nil, opts},
		{"no algorithm", v, ref, ms, dicomsr.Options{}},
		{"NaN volume", v, ref, []dicomsr.Measurement{bad}, opts},
		{"segment without a type code", v, ref, []dicomsr.Measurement{noCode}, opts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := dicomsr.Encode(tc.v, tc.seg, tc.ms, tc.opts); err == nil {
				t.Fatal("Encode succeeded")
			}
		})
	}
}

func errOutput(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return err.Error() + "\n" + string(ee.Stderr)
	}
	return err.Error()
}
