// Package dicomseg encodes a label volume as a DICOM Segmentation (SEG) instance
// (PS3.3 A.51) that sits on its source series' grid and frame of reference.
//
// The encoder writes BINARY segmentations in Explicit VR Little Endian, one
// frame per (segment, source slice) pair, frames ordered by segment number and
// then by slice, their bits packed contiguously across frames (PS3.5 8.1.1:
// 1-bit pixels are not padded per frame).
//
// Empty frames: a frame is written only for a (segment, slice) pair in which
// the segment has at least one voxel. A segment with no voxel anywhere is still
// described in SegmentSequence and gets exactly one all-zero frame on the first
// slice (k = 0). So every described segment is referenced by at least one
// frame, which readers that build their segment list from the frames (dcmjs in
// OHIF, dcmqi in 3D Slicer) need to agree with SegmentSequence, and a SEG in
// which nothing at all was found still has NumberOfFrames >= 1 and is a valid
// instance that viewers open as "all segments empty".
//
// Multi-frame sources: a frame on a plane of an enhanced (multi-frame) source
// instance references it by SOPInstanceUID and ReferencedFrameNumber
// (volume.Slice.Frame); ReferencedSeriesSequence lists each instance once.
//
// EncodeFractional writes FRACTIONAL (PROBABILITY, 8-bit) SEGs from
// per-segment probability volumes; the worker does not use it yet.
//
// Segment numbers: DICOM wants SegmentNumber to start at 1 and increase by 1,
// so segment n is the segment with the n-th smallest Label. When the labels are
// 1..N, as they usually are, SegmentNumber equals Label.
package dicomseg

// Code is a coded concept (CodeValue, CodingSchemeDesignator, CodeMeaning),
// e.g. {"T-A0100", "SRT", "Brain"} or {"12738006", "SCT", "Brain"}.
type Code struct {
	Value   string `yaml:"value" json:"value"`
	Scheme  string `yaml:"scheme" json:"scheme"`
	Meaning string `yaml:"meaning" json:"meaning"`
}

// Segment describes one segment of a SEG: which label value it is in the label
// volume and how a viewer names and draws it.
type Segment struct {
	// Label is the voxel value of this segment in the label volume (1..255). It
	// also becomes its SegmentNumber when the labels of a SEG are 1..N; otherwise
	// segments are numbered 1..N in increasing Label order (see Result.Segments).
	Label int `yaml:"label" json:"label"`
	// Name is the SegmentLabel shown by viewers.
	Name string `yaml:"name" json:"name"`
	// Category and Type are the SNOMED CT codes of SegmentedPropertyCategoryCodeSequence
	// and SegmentedPropertyTypeCodeSequence.
	Category Code `yaml:"category" json:"category"`
	Type     Code `yaml:"type" json:"type"`
	// RGB is the display colour; it is written as RecommendedDisplayCIELabValue.
	RGB [3]uint8 `yaml:"rgb" json:"rgb"`
}
