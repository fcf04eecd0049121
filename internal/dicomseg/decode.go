package dicomseg

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/checked"
	"github.com/segbridge/segbridge/internal/volume"
)

// ErrNotReadable is wrapped by every error of Decode and Decoded.OnGrid:
// the bytes are not a SEG this package can read back, or it does not fit
// the grid it is placed on.
var ErrNotReadable = errors.New("not a readable DICOM SEG")

// Decoded is a SEG read back: what its segments are, which source plane each
// frame lies on, and its pixels. Decode reads the uncompressed SEGs this
// package writes (and others like them): BINARY or FRACTIONAL, one segment
// per frame, each frame referencing its source image.
type Decoded struct {
	SOPInstanceUID    string
	SeriesInstanceUID string
	// ReferencedSeriesUID is the source series (ReferencedSeriesSequence).
	ReferencedSeriesUID string
	Rows, Cols          int
	// PixelSpacing is (between rows, between columns) and SliceSpacing the
	// distance between planes, in mm, from the shared functional groups
	// (SpacingBetweenSlices, else SliceThickness).
	PixelSpacing [2]float64
	SliceSpacing float64
	Segments     []DecodedSegment
	Frames       []DecodedFrame

	fractional bool
	maxValue   int
	pixels     []byte
}

// DecodedSegment is one item of the SegmentSequence.
type DecodedSegment struct {
	Number int
	Label  string
	// RGB is RecommendedDisplayCIELabValue in sRGB; a segment without one
	// gets a colour of its own from a fixed palette.
	RGB      [3]uint8
	Category Code
	Type     Code
	// AlgorithmName and AlgorithmVersion identify what made it.
	AlgorithmName    string
	AlgorithmVersion string
}

// DecodedFrame is one frame's segment and source plane.
type DecodedFrame struct {
	Segment int
	// SourceSOPInstanceUID and SourceFrame (1-based, 0 for a single-frame
	// source) name the source image the frame was derived from.
	SourceSOPInstanceUID string
	SourceFrame          int
}

// implicitLittleEndian is the other uncompressed transfer syntax Decode reads
// (a PACS may store what it receives in it).
const implicitLittleEndian = "1.2.840.10008.1.2"

// maxDecodeFrames bounds NumberOfFrames before anything is allocated for them.
const maxDecodeFrames = 1 << 20

// Decode parses a DICOM SEG file. Its errors wrap ErrNotReadable; no input
// makes it panic or allocate more than a few times len(data).
func Decode(data []byte) (d *Decoded, err error) {
	// suyashkumar/dicom panics on some malformed input.
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("%w: parser failed: %v", ErrNotReadable, r)
		}
	}()
	ts, err := volume.CheckStructure(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotReadable, err)
	}
	if ts != transferSyntax && ts != implicitLittleEndian {
		return nil, fmt.Errorf("%w: transfer syntax %s (segbridge writes and reads SEGs uncompressed)", ErrNotReadable, ts)
	}
	ds, err := dicom.Parse(bytes.NewReader(data), int64(len(data)), nil,
		dicom.SkipProcessingPixelDataValue(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotReadable, err)
	}
	r := reader{ds: &ds}
	if c := r.str(tag.SOPClassUID); c != SegmentationStorage {
		return nil, fmt.Errorf("%w: SOP class %q is not Segmentation Storage", ErrNotReadable, c)
	}
	d = &Decoded{
		SOPInstanceUID:    r.str(tag.SOPInstanceUID),
		SeriesInstanceUID: r.str(tag.SeriesInstanceUID),
		Rows:              r.int(tag.Rows),
		Cols:              r.int(tag.Columns),
	}
	if refs := items(&ds, tag.ReferencedSeriesSequence); len(refs) > 0 {
		d.ReferencedSeriesUID = (&reader{ds: refs[0]}).str(tag.SeriesInstanceUID)
	}
	switch st := r.str(tag.SegmentationType); st {
	case "BINARY":
		if ba := r.int(tag.BitsAllocated); ba != 1 {
			return nil, fmt.Errorf("%w: BINARY with BitsAllocated %d", ErrNotReadable, ba)
		}
	case "FRACTIONAL":
		d.fractional = true
		d.maxValue = r.int(tag.MaximumFractionalValue)
		if ba := r.int(tag.BitsAllocated); ba != 8 || d.maxValue < 1 || d.maxValue > 255 {
			return nil, fmt.Errorf("%w: FRACTIONAL with BitsAllocated %d and MaximumFractionalValue %d", ErrNotReadable, ba, d.maxValue)
		}
	default:
		return nil, fmt.Errorf("%w: SegmentationType %q", ErrNotReadable, st)
	}
	frames := r.int(tag.NumberOfFrames)
	if d.Rows < 1 || d.Cols < 1 || d.Rows > math.MaxUint16 || d.Cols > math.MaxUint16 || frames < 1 || frames > maxDecodeFrames {
		return nil, fmt.Errorf("%w: %d frames of %dx%d", ErrNotReadable, frames, d.Cols, d.Rows)
	}
	if err := d.readSegments(&ds); err != nil {
		return nil, err
	}
	if err := d.readGroups(&ds, frames); err != nil {
		return nil, err
	}
	return d, d.readPixels(&ds, frames)
}

func (d *Decoded) readSegments(ds *dicom.Dataset) error {
	seen := map[int]bool{}
	for i, it := range items(ds, tag.SegmentSequence) {
		r := reader{ds: it}
		s := DecodedSegment{Number: r.int(tag.SegmentNumber), Label: r.str(tag.SegmentLabel)}
		if s.Number < 1 || s.Number > math.MaxUint16 || seen[s.Number] {
			return fmt.Errorf("%w: segment item %d has SegmentNumber %d", ErrNotReadable, i+1, s.Number)
		}
		seen[s.Number] = true
		s.Category = code(it, tag.SegmentedPropertyCategoryCodeSequence)
		s.Type = code(it, tag.SegmentedPropertyTypeCodeSequence)
		if alg := items(it, tag.SegmentationAlgorithmIdentificationSequence); len(alg) > 0 {
			ar := reader{ds: alg[0]}
			s.AlgorithmName, s.AlgorithmVersion = ar.str(tag.AlgorithmName), ar.str(tag.AlgorithmVersion)
		}
		if s.AlgorithmName == "" {
			s.AlgorithmName = r.str(tag.SegmentAlgorithmName)
		}
		if lab, ok := r.ints(tag.RecommendedDisplayCIELabValue, 3); ok {
			s.RGB = rgbFromCIELab([3]int{lab[0], lab[1], lab[2]})
		} else {
			s.RGB = fallbackColour(s.Number)
		}
		d.Segments = append(d.Segments, s)
	}
	if len(d.Segments) == 0 {
		return fmt.Errorf("%w: no SegmentSequence", ErrNotReadable)
	}
	return nil
}

// readGroups reads each frame's segment and source image from the per-frame
// functional groups, and the spacing from the shared ones.
func (d *Decoded) readGroups(ds *dicom.Dataset, frames int) error {
	if shared := items(ds, tag.SharedFunctionalGroupsSequence); len(shared) > 0 {
		if pm := items(shared[0], tag.PixelMeasuresSequence); len(pm) > 0 {
			r := reader{ds: pm[0]}
			if ps, ok := r.floats(tag.PixelSpacing, 2); ok {
				d.PixelSpacing = [2]float64{ps[0], ps[1]}
			}
			if v, ok := r.floats(tag.SpacingBetweenSlices, 1); ok {
				d.SliceSpacing = v[0]
			} else if v, ok := r.floats(tag.SliceThickness, 1); ok {
				d.SliceSpacing = v[0]
			}
		}
	}
	per := items(ds, tag.PerFrameFunctionalGroupsSequence)
	if len(per) != frames {
		return fmt.Errorf("%w: %d per-frame functional groups for %d frames", ErrNotReadable, len(per), frames)
	}
	d.Frames = make([]DecodedFrame, frames)
	for f, it := range per {
		fr := &d.Frames[f]
		if si := items(it, tag.SegmentIdentificationSequence); len(si) > 0 {
			fr.Segment = (&reader{ds: si[0]}).int(tag.ReferencedSegmentNumber)
		}
		if d.segment(fr.Segment) == nil {
			return fmt.Errorf("%w: frame %d references segment %d, which SegmentSequence does not describe", ErrNotReadable, f+1, fr.Segment)
		}
		for _, der := range items(it, tag.DerivationImageSequence) {
			for _, src := range items(der, tag.SourceImageSequence) {
				r := reader{ds: src}
				fr.SourceSOPInstanceUID = r.str(tag.ReferencedSOPInstanceUID)
				if n, err := strconv.Atoi(r.str(tag.ReferencedFrameNumber)); err == nil {
					fr.SourceFrame = n
				}
				break
			}
			if fr.SourceSOPInstanceUID != "" {
				break
			}
		}
	}
	return nil
}

func (d *Decoded) readPixels(ds *dicom.Dataset, frames int) error {
	el, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		return fmt.Errorf("%w: no PixelData", ErrNotReadable)
	}
	info, ok := el.Value.GetValue().(dicom.PixelDataInfo)
	if !ok || !info.IntentionallyUnprocessed {
		return fmt.Errorf("%w: PixelData could not be read", ErrNotReadable)
	}
	n, ok := checked.Mul(frames, d.Rows, d.Cols)
	if !ok {
		return fmt.Errorf("%w: %d frames of %dx%d overflow", ErrNotReadable, frames, d.Cols, d.Rows)
	}
	need := n
	if !d.fractional {
		need = (n + 7) / 8
	}
	if len(info.UnprocessedValueData) < need {
		return fmt.Errorf("%w: PixelData has %d bytes, %d frames of %dx%d need %d", ErrNotReadable, len(info.UnprocessedValueData), frames, d.Cols, d.Rows, need)
	}
	d.pixels = info.UnprocessedValueData[:need]
	return nil
}

func (d *Decoded) segment(number int) *DecodedSegment {
	for i := range d.Segments {
		if d.Segments[i].Number == number {
			return &d.Segments[i]
		}
	}
	return nil
}

// Set reports whether pixel p (column + Cols*row) of frame f belongs to
// its segment: a set bit of a BINARY SEG, a value of at least half
// MaximumFractionalValue of a FRACTIONAL one.
func (d *Decoded) Set(f, p int) bool {
	i := f*d.Rows*d.Cols + p
	if d.fractional {
		return 2*int(d.pixels[i]) >= d.maxValue
	}
	// PS3.5 8.1.1: bits packed contiguously across frames, first pixel in
	// the least significant bit.
	return d.pixels[i>>3]>>(i&7)&1 == 1
}

// Voxels counts the set pixels of each segment, indexed like Segments.
func (d *Decoded) Voxels() []int {
	index := map[int]int{}
	for i, s := range d.Segments {
		index[s.Number] = i
	}
	out := make([]int, len(d.Segments))
	plane := d.Rows * d.Cols
	for f, fr := range d.Frames {
		n := 0
		for p := 0; p < plane; p++ {
			if d.Set(f, p) {
				n++
			}
		}
		out[index[fr.Segment]] += n
	}
	return out
}

// VoxelVolumeML is the volume of one SEG pixel in millilitres: PixelSpacing
// times the distance between planes, in mm³, over 1000. It is 0 when the SEG
// does not say its spacing.
func (d *Decoded) VoxelVolumeML() float64 {
	return d.PixelSpacing[0] * d.PixelSpacing[1] * d.SliceSpacing / 1000
}

// OnGrid places the frames on a source volume's grid by the source image each
// frame references, and returns per voxel (i + cols*(j + rows*k)) the
// SegmentNumber there, 0 for none; where segments overlap, the higher number
// wins. Every frame must reference one of slices.
func (d *Decoded) OnGrid(slices []volume.Slice, cols, rows int) ([]uint8, error) {
	if cols != d.Cols || rows != d.Rows {
		return nil, fmt.Errorf("%w: SEG frames are %dx%d, the source %dx%d", ErrNotReadable, d.Cols, d.Rows, cols, rows)
	}
	for _, s := range d.Segments {
		if s.Number > math.MaxUint8 {
			return nil, fmt.Errorf("%w: segment number %d does not fit a label volume", ErrNotReadable, s.Number)
		}
	}
	type key struct {
		uid   string
		frame int
	}
	sliceOf := make(map[key]int, len(slices))
	for k, s := range slices {
		sliceOf[key{s.SOPInstanceUID, s.Frame}] = k
	}
	plane := rows * cols
	n, ok := checked.Mul(plane, len(slices))
	if !ok {
		return nil, fmt.Errorf("%w: source grid overflows", ErrNotReadable)
	}
	labels := make([]uint8, n)
	for f, fr := range d.Frames {
		k, ok := sliceOf[key{fr.SourceSOPInstanceUID, fr.SourceFrame}]
		if !ok {
			return nil, fmt.Errorf("%w: frame %d references %s, which is not a plane of the source series", ErrNotReadable, f+1, describeSource(fr))
		}
		dst := labels[k*plane : (k+1)*plane]
		seg := uint8(fr.Segment)
		for p := range dst {
			if d.Set(f, p) && seg > dst[p] {
				dst[p] = seg
			}
		}
	}
	return labels, nil
}

func describeSource(fr DecodedFrame) string {
	if fr.SourceFrame > 0 {
		return fmt.Sprintf("frame %d of %s", fr.SourceFrame, fr.SourceSOPInstanceUID)
	}
	if fr.SourceSOPInstanceUID == "" {
		return "no source image"
	}
	return fr.SourceSOPInstanceUID
}

// reader reads single values of a dataset, "" or 0 when absent or malformed.
type reader struct{ ds *dicom.Dataset }

func (r reader) strs(t tag.Tag) []string {
	el, err := r.ds.FindElementByTag(t)
	if err != nil || el.Value == nil {
		return nil
	}
	s, _ := el.Value.GetValue().([]string)
	return s
}

func (r reader) str(t tag.Tag) string {
	s := r.strs(t)
	if len(s) == 0 {
		return ""
	}
	return strings.TrimRight(s[0], " \x00")
}

func (r reader) int(t tag.Tag) int {
	v, ok := r.ints(t, 1)
	if !ok {
		return 0
	}
	return v[0]
}

// ints reads n integers of an integer VR or of an IS.
func (r reader) ints(t tag.Tag, n int) ([]int, bool) {
	el, err := r.ds.FindElementByTag(t)
	if err != nil || el.Value == nil {
		return nil, false
	}
	switch v := el.Value.GetValue().(type) {
	case []int:
		if len(v) >= n {
			return v[:n], true
		}
	case []string:
		if len(v) < n {
			return nil, false
		}
		out := make([]int, n)
		for i := range out {
			x, err := strconv.Atoi(strings.TrimSpace(strings.TrimRight(v[i], "\x00")))
			if err != nil {
				return nil, false
			}
			out[i] = x
		}
		return out, true
	}
	return nil, false
}

func (r reader) floats(t tag.Tag, n int) ([]float64, bool) {
	s := r.strs(t)
	if len(s) < n {
		return nil, false
	}
	out := make([]float64, n)
	for i := range out {
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimRight(s[i], "\x00")), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// items returns the items of sequence t of ds.
func items(ds *dicom.Dataset, t tag.Tag) []*dicom.Dataset {
	el, err := ds.FindElementByTag(t)
	if err != nil || el.Value == nil {
		return nil
	}
	seq, ok := el.Value.GetValue().([]*dicom.SequenceItemValue)
	if !ok {
		return nil
	}
	out := make([]*dicom.Dataset, 0, len(seq))
	for _, it := range seq {
		if it == nil {
			continue
		}
		els, ok := it.GetValue().([]*dicom.Element)
		if !ok {
			continue
		}
		out = append(out, &dicom.Dataset{Elements: els})
	}
	return out
}

// code reads the first item of a Code Sequence.
func code(ds *dicom.Dataset, t tag.Tag) Code {
	it := items(ds, t)
	if len(it) == 0 {
		return Code{}
	}
	r := reader{ds: it[0]}
	v := r.str(tag.CodeValue)
	if v == "" {
		v = strings.TrimSpace(r.str(tag.LongCodeValue))
	}
	if v == "" {
		v = strings.TrimSpace(r.str(tag.URNCodeValue))
	}
	return Code{Value: v, Scheme: r.str(tag.CodingSchemeDesignator), Meaning: r.str(tag.CodeMeaning)}
}
