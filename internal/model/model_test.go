package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/internal/dicomseg"
)

// validManifest is a complete manifest whose file is "m.onnx".
const validManifest = `
name: test-model
version: 1.0.0
file: m.onnx
learned: false
applies_to: { modalities: [MR] }
output: { activation: sigmoid }
segments:
  - { label: 1, name: Head, category: {value: "123037004", scheme: SCT, meaning: "Anatomical Structure"}, type: {value: "69536005", scheme: SCT, meaning: "Head"}, rgb: [255, 200, 0] }
`

// modelDir returns a temporary folder holding an empty m.onnx.
func modelDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "m.onnx"), "")
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// edit returns validManifest with old replaced by new, failing if old is absent.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(validManifest, old) {
		t.Fatalf("validManifest has no %q", old)
	}
	return strings.Replace(validManifest, old, new, 1)
}

func TestParse_Defaults(t *testing.T) {
	dir := modelDir(t)
	m, err := Parse([]byte(validManifest), dir)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"input.name", m.Input.Name, "input"},
		{"input.mode", m.Input.Mode, InputVolume},
		{"intensity", m.Preprocess.Intensity.Method, IntensityMinMax},
		{"output.name", m.Output.Name, "output"},
		{"threshold", m.Output.ThresholdOrDefault(), 0.5},
		{"learned", *m.Learned, false},
		{"onnx path", m.ONNXPath, filepath.Join(dir, "m.onnx")},
		{"max label", m.MaxLabel(), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParse_Valid(t *testing.T) {
	tests := []struct {
		name     string
		manifest func(t *testing.T) string
		check    func(t *testing.T, m *Model)
	}{
		{
			name: "fixed window",
			manifest: func(t *testing.T) string {
				return edit(t, "output:", "preprocess: { intensity: { method: fixed, min: -100, max: 300.5 } }\noutput:")
			},
			check: func(t *testing.T, m *Model) {
				in := m.Preprocess.Intensity
				if *in.Min != -100 || *in.Max != 300.5 {
					t.Errorf("window = [%v, %v]", *in.Min, *in.Max)
				}
			},
		},
		{
			name: "softmax without threshold",
			manifest: func(t *testing.T) string {
				return edit(t, "activation: sigmoid", "activation: softmax")
			},
			check: func(t *testing.T, m *Model) {
				if m.Output.Threshold != nil {
					t.Errorf("threshold = %v, want unset", *m.Output.Threshold)
				}
			},
		},
		{
			name: "none with negative threshold",
			manifest: func(t *testing.T) string {
				return edit(t, "activation: sigmoid", "activation: none, threshold: -2.5, name: logits")
			},
			check: func(t *testing.T, m *Model) {
				if m.Output.ThresholdOrDefault() != -2.5 || m.Output.Name != "logits" {
					t.Errorf("output = %+v", m.Output)
				}
			},
		},
		{
			name: "absolute file",
			manifest: func(t *testing.T) string {
				abs := filepath.Join(t.TempDir(), "elsewhere.onnx")
				writeFile(t, abs, "")
				return edit(t, "file: m.onnx", "file: "+abs)
			},
			check: func(t *testing.T, m *Model) {
				if filepath.Base(m.ONNXPath) != "elsewhere.onnx" {
					t.Errorf("ONNXPath = %s", m.ONNXPath)
				}
			},
		},
		{
			name: "learned true",
			manifest: func(t *testing.T) string {
				return edit(t, "learned: false", "learned: true")
			},
			check: func(t *testing.T, m *Model) {
				if !*m.Learned {
					t.Error("learned = false")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.manifest(t)), modelDir(t))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, m)
		})
	}
}

func TestParse_Errors(t *testing.T) {
	seg := func(label int, name string) string {
		return strings.ReplaceAll(strings.ReplaceAll(
			`  - { label: L, name: N, category: {value: "1", scheme: SCT, meaning: "c"}, type: {value: "2", scheme: SCT, meaning: "t"} }`,
			"L", string(rune('0'+label))), "N", name)
	}
	tests := []struct {
		name     string
		old, new string // edit of validManifest; old == "" means new is the whole manifest
		wantErr  string
	}{
		{"empty", "", "", "manifest is empty"},
		{"not yaml", "", "name: [", "parse manifest"},
		{"two documents", "", validManifest + "---\nname: x\n", "more than one YAML document"},
		{"unknown key", "learned: false", "learned: false\nthreshold: 0.5", "field threshold not found"},
		{"unknown nested key", "output: { activation: sigmoid }", "output: { activation: sigmoid, treshold: 0.3 }", "field treshold not found"},
		{"missing name", "name: test-model", "", "name: required"},
		{"bad name", "name: test-model", "name: Test Model", `name: "Test Model" must match`},
		{"name too long", "name: test-model", "name: " + strings.Repeat("a", 65), "at most 64"},
		{"missing version", "version: 1.0.0", "", "version: required"},
		{"bad version", "version: 1.0.0", "version: 1.0 beta", `version: "1.0 beta" must be`},
		{"missing file", "file: m.onnx", "", "file: required"},
		{"file absent", "file: m.onnx", "file: nothere.onnx", "file: stat"},
		{"file is folder", "file: m.onnx", "file: .", "is not a regular file"},
		{"missing learned", "learned: false", "", "learned: required"},
		{"learned not bool", "learned: false", "learned: maybe", "cannot unmarshal"},
		{"bad modality", "[MR]", "[MR, 'M R']", `applies_to.modalities[1]: "M R" is not a DICOM modality code`},
		{"bad mode", "output:", "input: { mode: slabs }\noutput:", `input.mode: "slabs" is not one of volume, slices, window`},
		{"bad intensity", "output:", "preprocess: { intensity: { method: gamma } }\noutput:", `preprocess.intensity.method: "gamma" is not one of none, minmax, fixed, percentile, zscore, robust255`},
		{"fixed without window", "output:", "preprocess: { intensity: { method: fixed, min: 0 } }\noutput:", "method fixed needs min and max"},
		{"fixed reversed", "output:", "preprocess: { intensity: { method: fixed, min: 10, max: 0 } }\noutput:", "min 10 must be less than max 0"},
		{"fixed infinite", "output:", "preprocess: { intensity: { method: fixed, min: -.inf, max: 0 } }\noutput:", "must be finite"},
		{"window without fixed", "output:", "preprocess: { intensity: { method: minmax, max: 1 } }\noutput:", "only for method fixed"},
		{"missing activation", "activation: sigmoid", "name: out", "output.activation: required"},
		{"bad activation", "activation: sigmoid", "activation: foo", `output.activation: "foo" is not one of sigmoid, softmax, none`},
		{"sigmoid threshold 1", "activation: sigmoid", "activation: sigmoid, threshold: 1", "output.threshold: 1 must be in (0, 1)"},
		{"sigmoid threshold 0", "activation: sigmoid", "activation: sigmoid, threshold: 0", "must be in (0, 1)"},
		{"sigmoid threshold NaN", "activation: sigmoid", "activation: sigmoid, threshold: .nan", "must be in (0, 1)"},
		{"softmax threshold", "activation: sigmoid", "activation: softmax, threshold: 0.5", "output.threshold: not used with softmax"},
		{"none threshold inf", "activation: sigmoid", "activation: none, threshold: .inf", "output.threshold: must be a finite number"},
		{"empty segments", "", strings.SplitN(validManifest, "segments:", 2)[0] + "segments: []\n", "segments: at least one segment is required"},
		{"label 0", "label: 1", "label: 0", "segments[0].label: 0 is not in 1..255"},
		{"label 256", "label: 1", "label: 256", "segments[0].label: 256 is not in 1..255"},
		{"duplicate label", "rgb: [255, 200, 0] }", "rgb: [255, 200, 0] }\n" + seg(1, "Other"), "segments[1].label: 1 is also the label of segments[0]"},
		{"segment without name", "name: Head,", "", "segments[0].name: required"},
		{"segment without type", `type: {value: "69536005", scheme: SCT, meaning: "Head"},`, "", "segments[0].type: value, scheme and meaning are required"},
		{"rgb out of range", "rgb: [255, 200, 0]", "rgb: [256, 0, 0]", "cannot unmarshal"},
		{"duplicate key", "version: 1.0.0", "version: 1.0.0\nfile: m.onnx\n", "mapping key \"file\" already defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.new
			if tt.old != "" {
				data = edit(t, tt.old, tt.new)
			}
			_, err := Parse([]byte(data), modelDir(t))
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestParse_ReportsEveryError(t *testing.T) {
	data := strings.NewReplacer("name: test-model", "name: X", "version: 1.0.0", "version: ''").Replace(validManifest)
	_, err := Parse([]byte(data), modelDir(t))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"name: \"X\"", "version: required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestLoad_ErrorNamesFileAndField(t *testing.T) {
	dir := modelDir(t)
	path := filepath.Join(dir, "model.yaml")
	writeFile(t, path, edit(t, "activation: sigmoid", "activation: foo"))
	_, err := Load(path)
	want := path + `: output.activation: "foo" is not one of sigmoid, softmax, none`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestLoad_TooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	writeFile(t, path, "# "+strings.Repeat("x", maxManifestSize))
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("error = %v", err)
	}
}

func TestLoad_ReferenceModel(t *testing.T) {
	m, err := Load(filepath.Join("..", "..", "testdata", "models", "head-threshold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "head-threshold" || *m.Learned || m.Output.Activation != ActivationSigmoid {
		t.Errorf("manifest = %+v", m.Manifest)
	}
	if !m.Applies("MR") || m.Applies("CT") {
		t.Error("head-threshold should apply to MR only")
	}
}

func TestLoadDir(t *testing.T) {
	second := strings.Replace(validManifest, "name: test-model", "name: other", 1)
	tests := []struct {
		name      string
		files     map[string]string
		wantNames []string
		wantErr   string
	}{
		{
			name:      "yaml and yml in name order, others ignored",
			files:     map[string]string{"b.yml": validManifest, "a.yaml": second, "notes.txt": "x", "sub/c.yaml": validManifest},
			wantNames: []string{"other", "test-model"},
		},
		{
			name:  "empty",
			files: map[string]string{},
		},
		{
			name:    "duplicate name",
			files:   map[string]string{"a.yaml": validManifest, "b.yaml": validManifest},
			wantErr: `b.yaml: name: "test-model" is also the name of the model in`,
		},
		{
			name:    "one bad manifest",
			files:   map[string]string{"a.yaml": validManifest, "bad.yaml": "name: 1"},
			wantErr: "bad.yaml: version: required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := modelDir(t)
			for name, content := range tt.files {
				path := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, path, content)
			}
			models, err := LoadDir(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range models {
				names = append(names, m.Name)
				if filepath.Dir(m.Path) != dir {
					t.Errorf("Path = %s", m.Path)
				}
			}
			if strings.Join(names, ",") != strings.Join(tt.wantNames, ",") {
				t.Errorf("names = %v, want %v", names, tt.wantNames)
			}
		})
	}
}

func TestLoadDir_Missing(t *testing.T) {
	if _, err := LoadDir(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("no error")
	}
}

func TestModel_Applies(t *testing.T) {
	tests := []struct {
		name       string
		modalities []string
		modality   string
		want       bool
	}{
		{"listed", []string{"MR", "CT"}, "CT", true},
		{"case and space", []string{"MR"}, " mr", true},
		{"not listed", []string{"MR"}, "SEG", false},
		{"empty list applies to all", nil, "US", true},
		{"empty modality", []string{"MR"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Model{Manifest: Manifest{AppliesTo: Selector{Modalities: tt.modalities}}}
			if got := m.Applies(tt.modality); got != tt.want {
				t.Errorf("Applies(%q) = %v, want %v", tt.modality, got, tt.want)
			}
		})
	}
}

func TestModel_Segments(t *testing.T) {
	m, err := Parse([]byte(validManifest), modelDir(t))
	if err != nil {
		t.Fatal(err)
	}
	segs := m.Segments()
	want := dicomseg.Segment{
		Label:    1,
		Name:     "Head",
		Category: dicomseg.Code{Value: "123037004", Scheme: "SCT", Meaning: "Anatomical Structure"},
		Type:     dicomseg.Code{Value: "69536005", Scheme: "SCT", Meaning: "Head"},
		RGB:      [3]uint8{255, 200, 0},
	}
	if len(segs) != 1 || segs[0] != want {
		t.Fatalf("Segments() = %+v, want [%+v]", segs, want)
	}
	segs[0].Name = "changed"
	if m.Segments()[0].Name != "Head" {
		t.Error("Segments() shares its slice with the model")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(validManifest))
	f.Add([]byte(strings.Replace(validManifest, "sigmoid", "softmax", 1)))
	f.Add([]byte("name: x\nversion: 1\nfile: m.onnx\nlearned: true\noutput: {activation: none, threshold: -1}\npreprocess: {intensity: {method: fixed, min: 0, max: 1}}\nsegments: [{label: 3}]"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte(strings.Replace(validManifest, "applies_to: { modalities: [MR] }",
		"applies_to: { modalities: [MR], acquisition: 3d, max_slice_spacing: 1.5, max_pixel_spacing: 1.5, min_slices: 64, min_field_of_view: 120 }\nplausibility: { volume_ml: { 1: [900, 2200] } }", 1)))
	if ref, err := os.ReadFile(filepath.Join("..", "..", "testdata", "models", "head-threshold.yaml")); err == nil {
		f.Add(ref)
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.onnx"), nil, 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data, dir)
		if err != nil {
			return
		}
		// Whatever parses must satisfy the invariants the runtime relies on.
		if m.Name == "" || m.Version == "" || m.Learned == nil || len(m.Segments()) == 0 {
			t.Fatalf("accepted incomplete manifest: %+v", m.Manifest)
		}
		if ml := m.MaxLabel(); ml < 1 || ml > 255 {
			t.Fatalf("accepted max label %d", ml)
		}
		if m.Output.Activation == ActivationSigmoid {
			if th := m.Output.ThresholdOrDefault(); !(th > 0 && th < 1) {
				t.Fatalf("accepted sigmoid threshold %v", th)
			}
		}
	})
}

func TestParse_Pipeline(t *testing.T) {
	tests := []struct {
		name  string
		old   string
		new   string
		check func(t *testing.T, m *Model)
	}{
		{
			name: "conform true gets FreeSurfer's defaults",
			old:  "output:", new: "preprocess: { geometry: { conform: true, crop: { auto_threshold: 0.5, padding: 20 } } }\noutput:",
			check: func(t *testing.T, m *Model) {
				c := m.Preprocess.Geometry.Conform
				if c == nil || c.Size != 256 || c.VoxelSize != 1 || c.Orientation != "LIA" || c.Scale != IntensityRobust255 {
					t.Errorf("conform = %+v", c)
				}
				if cr := m.Preprocess.Geometry.Crop; cr == nil || cr.AutoThreshold != 0.5 || cr.Padding != 20 {
					t.Errorf("crop = %+v", cr)
				}
			},
		},
		{
			name: "conform mapping",
			old:  "output:", new: "preprocess: { geometry: { conform: { size: 128, voxel_size: 2, orientation: RAS, scale: none } } }\noutput:",
			check: func(t *testing.T, m *Model) {
				if c := m.Preprocess.Geometry.Conform; c.Size != 128 || c.VoxelSize != 2 || c.Orientation != "RAS" || c.Scale != IntensityNone {
					t.Errorf("conform = %+v", c)
				}
			},
		},
		{
			name: "slices defaults",
			old:  "output:", new: "input: { mode: slices }\noutput:",
			check: func(t *testing.T, m *Model) {
				if in := m.Input; in.BatchSize != 8 || in.Channels != 1 || in.ChannelMode != ChannelsRepeat {
					t.Errorf("input = %+v", in)
				}
			},
		},
		{
			name: "window defaults",
			old:  "output:", new: "input: { mode: window, patch_size: [64, 64, 32] }\noutput:",
			check: func(t *testing.T, m *Model) {
				if in := m.Input; *in.Overlap != 0.5 || in.Blending != BlendGaussian {
					t.Errorf("input = %+v", in)
				}
			},
		},
		{
			name: "remap and channels",
			old:  "activation: sigmoid", new: "activation: softmax, channels: 3, remap: {1: 1, 2: 1}, largest_component: true",
			check: func(t *testing.T, m *Model) {
				if m.OutputChannels() != 3 || m.MaxClass() != 2 || m.LabelOf(2) != 1 || m.LabelOf(0) != 0 || !m.Output.LargestComponent {
					t.Errorf("output = %+v", m.Output)
				}
			},
		},
		{
			name: "percentile and robust255 default",
			old:  "output:", new: "preprocess: { intensity: { method: robust255 } }\noutput:",
			check: func(t *testing.T, m *Model) {
				if u := m.Preprocess.Intensity.Upper; u == nil || *u != 99.9 {
					t.Errorf("upper = %v", u)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(edit(t, tt.old, tt.new)), modelDir(t))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, m)
		})
	}
}

func TestParse_PipelineErrors(t *testing.T) {
	tests := []struct {
		name, old, new, wantErr string
	}{
		{"bad orientation", "output:", "preprocess: { geometry: { orientation: LLA } }\noutput:", `preprocess.geometry.orientation: "LLA" names the same axis twice`},
		{"orientation letters", "output:", "preprocess: { geometry: { orientation: XYZ } }\noutput:", "X is not one of L, R, A, P, S, I"},
		{"spacing count", "output:", "preprocess: { geometry: { spacing: [1, 1] } }\noutput:", "preprocess.geometry.spacing: want 3 values"},
		{"spacing zero", "output:", "preprocess: { geometry: { spacing: [1, 0, 1] } }\noutput:", "0 is not a positive size"},
		{"conform and orientation", "output:", "preprocess: { geometry: { conform: true, orientation: RAS } }\noutput:", "conform: replaces orientation and spacing"},
		{"conform false", "output:", "preprocess: { geometry: { conform: false } }\noutput:", "conform is true or a mapping"},
		{"conform unknown key", "output:", "preprocess: { geometry: { conform: { sise: 256 } } }\noutput:", "field sise not found"},
		{"crop threshold", "output:", "preprocess: { geometry: { crop: { auto_threshold: 1 } } }\noutput:", "auto_threshold: 1 is not in [0, 1)"},
		{"percentile without bounds", "output:", "preprocess: { intensity: { method: percentile, lower: 5 } }\noutput:", "method percentile needs lower and upper"},
		{"percentile reversed", "output:", "preprocess: { intensity: { method: percentile, lower: 95, upper: 5 } }\noutput:", "lower 95 must be less than upper 5"},
		{"percentile range", "output:", "preprocess: { intensity: { method: percentile, lower: 5, upper: 101 } }\noutput:", "must be percentiles in [0, 100]"},
		{"clip without percentile", "output:", "preprocess: { intensity: { method: minmax, clip: true } }\noutput:", "clip: only for method percentile"},
		{"foreground without zscore", "output:", "preprocess: { intensity: { foreground: true } }\noutput:", "foreground: only for method zscore"},
		{"batch in volume mode", "output:", "input: { batch_size: 4 }\noutput:", "only for mode slices"},
		{"window without patch", "output:", "input: { mode: window }\noutput:", "input.patch_size: window mode needs 3 sizes"},
		{"window overlap", "output:", "input: { mode: window, patch_size: [8, 8, 8], overlap: 1 }\noutput:", "input.overlap: 1 is not in [0, 1)"},
		{"neighbours even", "output:", "input: { mode: slices, channels: 2, channel_mode: neighbours }\noutput:", "neighbours needs an odd number of channels"},
		{"channels too few", "activation: sigmoid", "activation: softmax, channels: 2, remap: {3: 1}", "output.channels: 2 channels cannot hold"},
		{"remap label", "activation: sigmoid", "activation: softmax, remap: {1: 300}", "class 1 maps to label 300"},
		{"bad description regex", "[MR] }", "[MR], series_description: '(' }", "applies_to.series_description: error parsing regexp"},
		{"colormap missing", "", strings.SplitN(validManifest, "segments:", 2)[0] + "segments: []\nsegments_from: { colormap: none.json, category: {value: a, scheme: b, meaning: c}, type: {value: a, scheme: b, meaning: c} }\n", "segments_from.colormap: stat"},
		{"colormap without codes", "", strings.SplitN(validManifest, "segments:", 2)[0] + "segments: []\nsegments_from: { colormap: cm.json }\n", "segments_from.category: value, scheme and meaning are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.new
			if tt.old != "" {
				data = edit(t, tt.old, tt.new)
			}
			_, err := Parse([]byte(data), modelDir(t))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestParse_SegmentsFromColormap(t *testing.T) {
	dir := modelDir(t)
	files := t.TempDir() // the colormap lives elsewhere, found through WithFileDirs
	writeFile(t, filepath.Join(files, "cm.json"), `{"R": [0, 10, 20, 30], "G": [0, 11, 21, 31], "B": [0, 12, 22, 32], "labels": ["BG", "Alpha", "Beta", "Gamma"]}`)
	manifest := strings.SplitN(validManifest, "segments:", 2)[0] + `segments:
  - { label: 2, name: Custom, category: {value: "1", scheme: SCT, meaning: "c"}, type: {value: "2", scheme: SCT, meaning: "t"} }
segments_from:
  colormap: cm.json
  category: { value: "123037004", scheme: SCT, meaning: "Anatomical Structure" }
  type: { value: "12738006", scheme: SCT, meaning: "Brain" }
`
	if _, err := Parse([]byte(manifest), dir); err == nil || !strings.Contains(err.Error(), "SEGBRIDGE_MODEL_FILES") {
		t.Fatalf("without the folder: error %v, want one naming SEGBRIDGE_MODEL_FILES", err)
	}
	m, err := Parse([]byte(manifest), dir, WithFileDirs(files))
	if err != nil {
		t.Fatal(err)
	}
	segs := m.Segments()
	if len(segs) != 3 || m.MaxLabel() != 3 {
		t.Fatalf("segments %+v", segs)
	}
	want := []string{"Alpha", "Custom", "Gamma"}
	for i, s := range segs {
		if s.Label != i+1 || s.Name != want[i] {
			t.Errorf("segment %d = %d %q, want %d %q", i, s.Label, s.Name, i+1, want[i])
		}
	}
	if segs[0].RGB != [3]uint8{10, 11, 12} || segs[0].Type.Meaning != "Brain" {
		t.Errorf("segment 1 = %+v", segs[0])
	}
}

func TestParse_FileDirs(t *testing.T) {
	manifestDir, files := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(files, "m.onnx"), "")
	if _, err := Parse([]byte(validManifest), manifestDir); err == nil {
		t.Fatal("found a file that is not beside the manifest")
	}
	m, err := Parse([]byte(validManifest), manifestDir, WithFileDirs(filepath.Join(t.TempDir(), "empty"), files))
	if err != nil {
		t.Fatal(err)
	}
	if m.ONNXPath != filepath.Join(files, "m.onnx") {
		t.Errorf("ONNXPath = %s", m.ONNXPath)
	}
	// Beside the manifest wins.
	writeFile(t, filepath.Join(manifestDir, "m.onnx"), "")
	if m, _ := Parse([]byte(validManifest), manifestDir, WithFileDirs(files)); m.ONNXPath != filepath.Join(manifestDir, "m.onnx") {
		t.Errorf("ONNXPath = %s, want the one beside the manifest", m.ONNXPath)
	}
}

func TestModel_Matches(t *testing.T) {
	m, err := Parse([]byte(edit(t, "applies_to: { modalities: [MR] }", "applies_to: { modalities: [MR], series_description: '(?i)t1|mprage', body_parts: [BRAIN, HEAD] }")), modelDir(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		s          SeriesInfo
		want       bool
		wantReason string
	}{
		{"all match", SeriesInfo{Modality: "MR", SeriesDescription: "Sag T1 MPRAGE", BodyPartExamined: "brain"}, true, ""},
		{"modality", SeriesInfo{Modality: "CT", SeriesDescription: "T1", BodyPartExamined: "BRAIN"}, false, `modality "CT"`},
		{"description", SeriesInfo{Modality: "MR", SeriesDescription: "FLAIR", BodyPartExamined: "BRAIN"}, false, `series description "FLAIR" does not match`},
		{"body part", SeriesInfo{Modality: "MR", SeriesDescription: "t1_se", BodyPartExamined: "KNEE"}, false, `body part "KNEE" is not one of BRAIN, HEAD`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := m.Matches(tt.s)
			if ok != tt.want || !strings.Contains(why, tt.wantReason) {
				t.Errorf("Matches = %v, %q; want %v, %q", ok, why, tt.want, tt.wantReason)
			}
		})
	}
	if got := Matching([]*Model{m}, SeriesInfo{Modality: "MR", SeriesDescription: "T1", BodyPartExamined: "HEAD"}); len(got) != 1 {
		t.Errorf("Matching = %d models", len(got))
	}
}

// TestLoadDir_Brainchop loads the committed brainchop manifests against the
// shared model files; it needs ../shared/models/brainchop.
func TestLoadDir_Brainchop(t *testing.T) {
	files := filepath.Join("..", "..", "..", "shared", "models", "brainchop")
	if _, err := os.Stat(files); err != nil {
		t.Skipf("needs the pretrained brainchop models in %s (absent: %v)", files, err)
	}
	ms, err := LoadDir(filepath.Join("..", "..", "models", "brainchop"), WithFileDirs(files))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*Model{}
	for _, m := range ms {
		byName[m.Name] = m
	}
	for _, name := range []string{"model5_gw_ae", "model11_gw_ae", "mindgrab", "model21_104class"} {
		if byName[name] == nil {
			t.Errorf("no model %s", name)
		}
	}
	if m := byName["model21_104class"]; m != nil && (len(m.Segments()) != 103 || m.Segments()[0].Name != "ctx-lh-bankssts") {
		t.Errorf("model21_104class has %d segments", len(m.Segments()))
	}
}
