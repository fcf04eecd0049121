package pipeline

import (
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
)

// SeriesInfo is what a model's rules look at, read from an assembled
// volume: its header's main attributes and MRAcquisitionType, and its
// geometry as the volume has it (slice spacing from the slices' positions,
// not from what the header claims).
func SeriesInfo(v *volume.Volume) model.SeriesInfo {
	return model.SeriesInfo{
		Modality:          v.Modality,
		SeriesDescription: headerString(v.Header, tag.SeriesDescription),
		BodyPartExamined:  headerString(v.Header, tag.BodyPartExamined),
		Acquisition:       headerString(v.Header, tag.MRAcquisitionType),
		Slices:            v.Depth,
		SliceSpacing:      v.Spacing[2],
		PixelSpacing:      [2]float64{v.Spacing[1], v.Spacing[0]},
		Extent:            [3]float64{float64(v.Cols) * v.Spacing[0], float64(v.Rows) * v.Spacing[1], float64(v.Depth) * v.Spacing[2]},
	}
}

// headerString is a text attribute of the header, "" when absent.
func headerString(ds *dicom.Dataset, t tag.Tag) string {
	if ds == nil {
		return ""
	}
	el, err := ds.FindElementByTag(t)
	if err != nil {
		return ""
	}
	s, ok := el.Value.GetValue().([]string)
	if !ok || len(s) == 0 {
		return ""
	}
	return strings.TrimSpace(s[0])
}

// VolumesML is each label's volume in millilitres on the source grid.
func VolumesML(v *volume.Volume, labels []uint8) map[int]float64 {
	var counts [256]int
	for _, l := range labels {
		counts[l]++
	}
	voxelML := v.Spacing[0] * v.Spacing[1] * v.Spacing[2] / 1000
	out := map[int]float64{}
	for l, n := range counts {
		if l > 0 && n > 0 {
			out[l] = float64(n) * voxelML
		}
	}
	return out
}

// seriesDescription is the SEG's SeriesDescription: what made it, and a
// flag a radiologist sees in any viewer's series list when its volumes are
// outside what the model's results should be. SeriesDescription is LO, at
// most 64 characters.
func seriesDescription(modelName string, implausible bool) string {
	const prefix, flag = "AI segmentation: ", " (CHECK: implausible volume)"
	name := modelName
	room := 64 - len(prefix)
	if implausible {
		room -= len(flag)
	}
	if len(name) > room {
		name = name[:room]
	}
	if implausible {
		return prefix + name + flag
	}
	return prefix + name
}
