package intake

import (
	"context"
	"strconv"
	"strings"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
)

// headerReader reads an instance's header from Orthanc. The manual trigger
// uses it, when the finder it was given has it (the Orthanc client does), to
// check the rules of a model that need a series' headers before queuing: a
// person then hears at once why a series is refused, instead of a job that
// ends skipped. Automatic triggers never call it (the webhook answers while
// Orthanc waits on it); the worker checks the same rules on the volume.
type headerReader interface {
	InstanceTags(ctx context.Context, id string) (map[string]string, error)
}

var _ headerReader = (*orthanc.Client)(nil)

// DICOM attributes the header rules read, as Orthanc's tags?short names them.
const (
	tagMRAcquisitionType    = "0018,0023"
	tagSliceThickness       = "0018,0050"
	tagSpacingBetweenSlices = "0018,0088"
	tagNumberOfFrames       = "0028,0008"
	tagRows                 = "0028,0010"
	tagColumns              = "0028,0011"
	tagPixelSpacing         = "0028,0030"
)

// withHeader adds to info what one instance's header says of the series:
// MRAcquisitionType, pixel spacing, slice spacing (SpacingBetweenSlices,
// else SliceThickness: the header's word, where the worker measures the
// positions), the number of slices (the instances, or the frames of a
// single multi-frame instance) and the extent they imply. What the header
// does not give stays unknown, and the rules about it pass.
func withHeader(info model.SeriesInfo, tags map[string]string, instances int) model.SeriesInfo {
	num := func(tag string, part int) float64 {
		parts := strings.Split(tags[tag], `\`)
		if part >= len(parts) {
			return 0
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(parts[part]), 64)
		if err != nil || f < 0 {
			return 0
		}
		return f
	}
	info.Acquisition = strings.TrimSpace(tags[tagMRAcquisitionType])
	info.PixelSpacing = [2]float64{num(tagPixelSpacing, 0), num(tagPixelSpacing, 1)}
	switch {
	case num(tagSpacingBetweenSlices, 0) > 0:
		info.SliceSpacing, info.SliceSpacingFrom = num(tagSpacingBetweenSlices, 0), "SpacingBetweenSlices"
	case num(tagSliceThickness, 0) > 0:
		info.SliceSpacing, info.SliceSpacingFrom = num(tagSliceThickness, 0), "SliceThickness"
	}
	info.Slices = instances
	if frames := int(num(tagNumberOfFrames, 0)); instances == 1 && frames > 1 {
		info.Slices = frames
	}
	if ps := info.PixelSpacing; ps[0] > 0 && ps[1] > 0 && info.SliceSpacing > 0 {
		info.Extent = [3]float64{num(tagColumns, 0) * ps[1], num(tagRows, 0) * ps[0], float64(info.Slices) * info.SliceSpacing}
	}
	return info
}
