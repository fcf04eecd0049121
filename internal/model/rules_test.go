package model

import (
	"strings"
	"testing"
)

// brainRules is a manifest with the rules the brainchop manifests use.
func brainRules(t *testing.T) *Model {
	t.Helper()
	m, err := Parse([]byte(edit(t, "applies_to: { modalities: [MR] }", `applies_to:
  modalities: [MR]
  acquisition: 3d
  max_slice_spacing: 1.5
  max_pixel_spacing: 1.5
  min_slices: 64
  min_field_of_view: 120
plausibility:
  volume_ml: { 1: [900, 2200] }`)), modelDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestModel_Matches_GeometryRules(t *testing.T) {
	m := brainRules(t)
	if m.AppliesTo.Acquisition != "3D" || !m.AppliesTo.HasGeometryRules() {
		t.Fatalf("acquisition %q, geometry rules %v", m.AppliesTo.Acquisition, m.AppliesTo.HasGeometryRules())
	}
	t1 := SeriesInfo{Modality: "MR", Acquisition: "3D", Slices: 176, SliceSpacing: 1, PixelSpacing: [2]float64{1, 1}, Extent: [3]float64{256, 256, 176}}
	tests := []struct {
		name string
		edit func(*SeriesInfo)
		want string // "" when it matches
	}{
		{"1 mm 3-D T1", func(*SeriesInfo) {}, ""},
		{"main tags only (webhook)", func(s *SeriesInfo) { *s = SeriesInfo{Modality: "MR"} }, ""},
		{"no MRAcquisitionType", func(s *SeriesInfo) { s.Acquisition = "" }, ""},
		{"spacing written with rounding", func(s *SeriesInfo) { s.SliceSpacing = 1.5000001 }, ""},
		{"2-D thick-slice T2", func(s *SeriesInfo) {
			s.Acquisition, s.Slices, s.SliceSpacing, s.Extent = "2D", 25, 5.76, [3]float64{230, 230, 144}
		}, "it is a 2D acquisition (MRAcquisitionType), the model was trained on 3D"},
		{"thick slices, no acquisition type", func(s *SeriesInfo) {
			s.Acquisition, s.SliceSpacing, s.SliceSpacingFrom = "", 4.8, "SpacingBetweenSlices"
		}, "its slices are 4.8 mm apart (SpacingBetweenSlices), the model was trained on at most 1.5 mm"},
		{"coarse pixels", func(s *SeriesInfo) { s.PixelSpacing = [2]float64{0.9, 1.8} }, "its pixels are 0.9 x 1.8 mm"},
		{"localizer", func(s *SeriesInfo) { s.Acquisition, s.Slices = "2D", 3 }, "2D acquisition"},
		{"3-D localizer", func(s *SeriesInfo) { s.Slices = 3 }, "it has 3 slices, the model needs at least 64"},
		{"slab", func(s *SeriesInfo) { s.Slices, s.Extent[2] = 80, 80 }, "it covers 256 x 256 x 80 mm (columns x rows x slices), the model needs at least 120 mm along each"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := t1
			tt.edit(&s)
			ok, why := m.Matches(s)
			if tt.want == "" {
				if !ok {
					t.Fatalf("refused: %s", why)
				}
				return
			}
			if ok || !strings.Contains(why, tt.want) || !strings.HasPrefix(why, "the model was not trained for this series: ") {
				t.Fatalf("Matches = %v, %q; want refused with %q", ok, why, tt.want)
			}
		})
	}
}

func TestParse_RuleErrors(t *testing.T) {
	tests := []struct{ name, old, new, want string }{
		{"acquisition", "applies_to: { modalities: [MR] }", "applies_to: { acquisition: 4D }", `applies_to.acquisition: "4D" is not 2D or 3D`},
		{"negative spacing", "applies_to: { modalities: [MR] }", "applies_to: { max_slice_spacing: -1 }", "applies_to.max_slice_spacing: -1 is not a distance"},
		{"negative slices", "applies_to: { modalities: [MR] }", "applies_to: { min_slices: -3 }", "applies_to.min_slices: -3 is negative"},
		{"plausibility of no segment", "output:", "plausibility: { volume_ml: { 2: [1, 2] } }\noutput:", "plausibility.volume_ml[2]: label 2 is not a segment of the model"},
		{"plausibility range", "output:", "plausibility: { volume_ml: { 1: [5, 2] } }\noutput:", "plausibility.volume_ml[1]: [5, 2] is not a range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(edit(t, tt.old, tt.new)), modelDir(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestModel_Implausible(t *testing.T) {
	m := brainRules(t)
	if w := m.Implausible(map[int]float64{1: 1450}); len(w) != 0 {
		t.Errorf("a 1450 mL brain: warnings %q", w)
	}
	for _, tc := range []struct {
		vols map[int]float64
		want string
	}{
		{map[int]float64{1: 312.4}, "segment Head (label 1) is 312.4 mL, outside the 900-2200 mL"},
		{map[int]float64{}, "segment Head (label 1) is 0.0 mL"},
		{map[int]float64{1: 4000}, "is 4000.0 mL"},
	} {
		w := m.Implausible(tc.vols)
		if len(w) != 1 || !strings.Contains(w[0], tc.want) {
			t.Errorf("Implausible(%v) = %q, want %q", tc.vols, w, tc.want)
		}
	}
}
