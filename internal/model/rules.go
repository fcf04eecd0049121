package model

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Acquisition types (MRAcquisitionType).
const (
	Acquisition2D = "2D"
	Acquisition3D = "3D"
)

// HasGeometryRules reports whether the selector has rules that need the
// series' headers or geometry (acquisition, spacings, slices, field of
// view), which only the manual trigger and the worker can check.
func (s *Selector) HasGeometryRules() bool {
	return s.Acquisition != "" || s.MaxSliceSpacing > 0 || s.MaxPixelSpacing > 0 || s.MinSlices > 0 || s.MinFieldOfView > 0
}

func (s *Selector) validateRules(bad func(field, format string, args ...any)) {
	if a := s.Acquisition; a != "" {
		switch strings.ToUpper(a) {
		case Acquisition2D, Acquisition3D:
			s.Acquisition = strings.ToUpper(a)
		default:
			bad("applies_to.acquisition", "%q is not 2D or 3D", a)
		}
	}
	for _, r := range []struct {
		field string
		v     float64
	}{{"max_slice_spacing", s.MaxSliceSpacing}, {"max_pixel_spacing", s.MaxPixelSpacing}, {"min_field_of_view", s.MinFieldOfView}} {
		if r.v < 0 || math.IsNaN(r.v) || math.IsInf(r.v, 0) {
			bad("applies_to."+r.field, "%v is not a distance in mm (>= 0; 0 means no rule)", r.v)
		}
	}
	if s.MinSlices < 0 {
		bad("applies_to.min_slices", "%d is negative", s.MinSlices)
	}
}

// checkGeometry applies the rules that need the series' headers or
// geometry to what info knows; what it does not know passes. The reason
// names every rule the series breaks, the likeliest cause first.
func (s *Selector) checkGeometry(info SeriesInfo) (ok bool, reason string) {
	var why []string
	if s.Acquisition != "" && info.Acquisition != "" && !strings.EqualFold(strings.TrimSpace(info.Acquisition), s.Acquisition) {
		why = append(why, fmt.Sprintf("it is a %s acquisition (MRAcquisitionType), the model was trained on %s", strings.TrimSpace(info.Acquisition), s.Acquisition))
	}
	if s.MaxSliceSpacing > 0 && info.SliceSpacing > s.MaxSliceSpacing+spacingTolerance {
		from := "between slice centres"
		if info.SliceSpacingFrom != "" {
			from = info.SliceSpacingFrom
		}
		why = append(why, fmt.Sprintf("its slices are %.3g mm apart (%s), the model was trained on at most %.3g mm", info.SliceSpacing, from, s.MaxSliceSpacing))
	}
	if ps := max(info.PixelSpacing[0], info.PixelSpacing[1]); s.MaxPixelSpacing > 0 && ps > s.MaxPixelSpacing+spacingTolerance {
		why = append(why, fmt.Sprintf("its pixels are %.3g x %.3g mm, the model was trained on at most %.3g mm", info.PixelSpacing[0], info.PixelSpacing[1], s.MaxPixelSpacing))
	}
	if s.MinSlices > 0 && info.Slices > 0 && info.Slices < s.MinSlices {
		why = append(why, fmt.Sprintf("it has %d slices, the model needs at least %d", info.Slices, s.MinSlices))
	}
	if s.MinFieldOfView > 0 && slices.ContainsFunc(info.Extent[:], func(e float64) bool { return e > 0 && e < s.MinFieldOfView-spacingTolerance }) {
		e := info.Extent
		why = append(why, fmt.Sprintf("it covers %.0f x %.0f x %.0f mm (columns x rows x slices), the model needs at least %.0f mm along each", e[0], e[1], e[2], s.MinFieldOfView))
	}
	return len(why) == 0, strings.Join(why, "; ")
}

// spacingTolerance absorbs the rounding of spacings written as decimal
// strings (1.5 written as 1.50000001).
const spacingTolerance = 1e-3

// Plausibility says what results to expect of a model. A result outside it
// is still stored; the job ends done with a warning that the API and the
// SEG's series description show.
type Plausibility struct {
	// VolumeML gives, per segment label, the range of volumes in
	// millilitres (cm³) the segment is expected to have, as [min, max].
	VolumeML map[int][2]float64 `yaml:"volume_ml,omitempty"`
}

func (p *Plausibility) validate(labels map[int]int, bad func(field, format string, args ...any)) {
	for label, r := range p.VolumeML {
		f := fmt.Sprintf("plausibility.volume_ml[%d]", label)
		if _, ok := labels[label]; !ok {
			bad(f, "label %d is not a segment of the model", label)
		}
		if !(r[0] >= 0 && r[0] < r[1]) || math.IsInf(r[1], 0) {
			bad(f, "[%v, %v] is not a range of millilitres with 0 <= min < max", r[0], r[1])
		}
	}
}

// Implausible compares the volume of each segment (millilitres by label; a
// label absent has none) with the expected ranges and returns a warning
// for every one outside, in label order, naming the segment.
func (m *Model) Implausible(volumeML map[int]float64) []string {
	var out []string
	labels := make([]int, 0, len(m.Plausibility.VolumeML))
	for l := range m.Plausibility.VolumeML {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	for _, l := range labels {
		r := m.Plausibility.VolumeML[l]
		v := volumeML[l]
		if v >= r[0] && v <= r[1] {
			continue
		}
		name := fmt.Sprintf("label %d", l)
		for _, s := range m.Manifest.Segments {
			if s.Label == l {
				name = fmt.Sprintf("%s (label %d)", s.Name, l)
			}
		}
		out = append(out, fmt.Sprintf("segment %s is %.1f mL, outside the %g-%g mL the model's results are expected to have: check the result and the series",
			name, v, r[0], r[1]))
	}
	return out
}
