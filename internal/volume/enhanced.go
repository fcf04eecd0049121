package volume

import (
	"fmt"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// Enhanced multi-frame images (PS3.3 C.7.6.16) keep each frame's geometry in
// functional groups: a group is in the frame's item of
// PerFrameFunctionalGroupsSequence when it varies, else in the single item of
// SharedFunctionalGroupsSequence. Some writers (and legacy converters) also
// leave the classic top-level attributes in place; they are the last resort.

// readFrames splits an enhanced instance into its frames. plane is the byte
// size of one frame's pixels; in.raw holds frames of them.
func (in *Instance) readFrames(ds *dicom.Dataset, frames, plane int) error {
	perFrame := sequenceItems(ds, tag.PerFrameFunctionalGroupsSequence)
	if len(perFrame) != frames {
		return fmt.Errorf("PerFrameFunctionalGroupsSequence has %d items for %d frames", len(perFrame), frames)
	}
	var shared *dicom.Dataset
	if items := sequenceItems(ds, tag.SharedFunctionalGroupsSequence); len(items) > 0 {
		shared = items[0]
	}
	// The frames share the outer Instance's identifiers, pixel format and
	// header; their own fields are set below.
	base := *in
	base.Frames = nil
	in.Frames = make([]*Instance, frames)
	for f := range frames {
		fr := base
		fr.Frame = f + 1
		fr.raw = in.raw[f*plane : (f+1)*plane]
		g := functionalGroups{frame: perFrame[f], shared: shared, top: ds}
		if err := fr.readPlane(g.item(tag.PlanePositionSequence), g.item(tag.PlaneOrientationSequence),
			g.item(tag.PixelMeasuresSequence), g.item(tag.PixelValueTransformationSequence)); err != nil {
			return fmt.Errorf("frame %d: %w", f+1, err)
		}
		content := g.item(tag.FrameContentSequence)
		if n, ok, err := optionalInt(content, tag.TemporalPositionIndex); err == nil && ok {
			fr.TemporalPosition = n
		}
		if n, ok, err := optionalInt(content, tag.FrameAcquisitionNumber); err == nil && ok {
			fr.AcquisitionNumber = n
		}
		if t, err := optionalFloat(g.item(tag.MREchoSequence), tag.EffectiveEchoTime, 0); err == nil && t != 0 {
			fr.EchoTime = t
		}
		in.Frames[f] = &fr
	}
	first := in.Frames[0]
	in.Position, in.Orientation, in.PixelSpacing = first.Position, first.Orientation, first.PixelSpacing
	in.RescaleSlope, in.RescaleIntercept = first.RescaleSlope, first.RescaleIntercept
	in.SliceThickness, in.SpacingBetweenSlices = first.SliceThickness, first.SpacingBetweenSlices
	return nil
}

// functionalGroups finds the functional groups of one frame.
type functionalGroups struct {
	frame, shared, top *dicom.Dataset
}

// item returns the first item of functional group seq for the frame: from
// its per-frame groups, else the shared ones, else the top-level dataset.
func (g functionalGroups) item(seq tag.Tag) *dicom.Dataset {
	for _, ds := range []*dicom.Dataset{g.frame, g.shared} {
		if ds == nil {
			continue
		}
		if items := sequenceItems(ds, seq); len(items) > 0 {
			return items[0]
		}
	}
	return g.top
}

// sequenceItems returns the items of sequence t in ds, each as a dataset; nil
// when t is absent or not a sequence.
func sequenceItems(ds *dicom.Dataset, t tag.Tag) []*dicom.Dataset {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil || e.Value.ValueType() != dicom.Sequences {
		return nil
	}
	items, ok := e.Value.GetValue().([]*dicom.SequenceItemValue)
	if !ok {
		return nil
	}
	out := make([]*dicom.Dataset, 0, len(items))
	for _, it := range items {
		if it == nil {
			continue
		}
		els, _ := it.GetValue().([]*dicom.Element)
		out = append(out, &dicom.Dataset{Elements: els})
	}
	return out
}

// name identifies an image plane in messages: its SOPInstanceUID, and its
// frame number when it is a frame of a multi-frame instance.
func (in *Instance) name() string {
	if in.Frame > 0 {
		return fmt.Sprintf("%s frame %d", in.SOPInstanceUID, in.Frame)
	}
	return in.SOPInstanceUID
}

// planes lists the image planes of instances: each single-frame instance,
// and each frame of a multi-frame one.
func planes(instances []*Instance) []*Instance {
	n := 0
	for _, in := range instances {
		n += max(1, len(in.Frames))
	}
	out := make([]*Instance, 0, n)
	for _, in := range instances {
		if len(in.Frames) > 0 {
			out = append(out, in.Frames...)
		} else {
			out = append(out, in)
		}
	}
	return out
}
