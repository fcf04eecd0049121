package dicomseg

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/checked"
	"github.com/segbridge/segbridge/internal/volume"
)

// SOP Class and Transfer Syntax UIDs the encoder writes.
const (
	// SegmentationStorage is the SOP Class UID of the Segmentation IOD.
	SegmentationStorage = "1.2.840.10008.5.1.4.1.1.66.4"
	// transferSyntax is Explicit VR Little Endian.
	transferSyntax = "1.2.840.10008.1.2.1"
)

// Codes of the derivation and algorithm descriptions written in every SEG.
// They are functions rather than package variables so that nothing can change them.
func (encoder) codeSourceImage() Code {
	// PurposeOfReferenceCode of each frame's source image (CID 7202).
	return Code{"121322", "DCM", "Source image for image processing operation"}
}

func (encoder) codeSegmentation() Code {
	// DerivationCode of each frame (CID 7203).
	return Code{"113076", "DCM", "Segmentation"}
}

func (encoder) codeArtificialIntelligence() Code {
	// AlgorithmFamilyCode of the model (CID 7162).
	return Code{"123110", "DCM", "Artificial Intelligence"}
}

// Defaults of Options.
const (
	DefaultSeriesNumber          = 9000
	DefaultSeriesDescription     = "segbridge SEG"
	DefaultContentLabel          = "SEGMENTATION"
	DefaultManufacturer          = "segbridge"
	DefaultManufacturerModelName = "segbridge"
	DefaultSoftwareVersions      = "segbridge"
	DefaultDeviceSerialNumber    = "0"
)

// Options describe the SEG instance beyond its voxels: series, content and
// equipment attributes. The zero value of a field means its default.
type Options struct {
	// SeriesNumber of the new SEG series. Default 9000, chosen to sort after the
	// source series in viewers' series lists.
	SeriesNumber int
	// SeriesDescription of the new series. Default "segbridge SEG".
	SeriesDescription string
	// ContentLabel (CS: at most 16 of A-Z, 0-9, space and underscore).
	// Default "SEGMENTATION".
	ContentLabel string
	// ContentDescription (LO). Default empty.
	ContentDescription string
	// ContentCreator is ContentCreatorName (PN) in "Family^Given" form, e.g.
	// "Segbridge^Bot"; a name without "^" is valid but validators flag it as the
	// retired PN form. Default empty.
	ContentCreator string
	// AlgorithmName and AlgorithmVersion identify the model that made the
	// segmentation (SegmentAlgorithmName and the Segmentation Algorithm
	// Identification Sequence). Both are required.
	AlgorithmName    string
	AlgorithmVersion string
	// Manufacturer, ManufacturerModelName, SoftwareVersions and DeviceSerialNumber
	// are the Enhanced General Equipment attributes, all Type 1 in a SEG.
	// Defaults "segbridge", "segbridge", "segbridge" and "0".
	Manufacturer          string
	ManufacturerModelName string
	SoftwareVersions      string
	DeviceSerialNumber    string
	// Now gives ContentDate/Time, SeriesDate/Time and InstanceCreationDate/Time.
	// Default time.Now.
	Now func() time.Time
	// NewUID makes SeriesInstanceUID, SOPInstanceUID and DimensionOrganizationUID,
	// in that order. Default NewUID (random 2.25 UIDs); set it for byte-for-byte
	// reproducible output in tests.
	NewUID func() string
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.SeriesNumber == 0 {
		o.SeriesNumber = DefaultSeriesNumber
	}
	if o.SeriesDescription == "" {
		o.SeriesDescription = DefaultSeriesDescription
	}
	if o.ContentLabel == "" {
		o.ContentLabel = DefaultContentLabel
	}
	if o.Manufacturer == "" {
		o.Manufacturer = DefaultManufacturer
	}
	if o.ManufacturerModelName == "" {
		o.ManufacturerModelName = DefaultManufacturerModelName
	}
	if o.SoftwareVersions == "" {
		o.SoftwareVersions = DefaultSoftwareVersions
	}
	if o.DeviceSerialNumber == "" {
		o.DeviceSerialNumber = DefaultDeviceSerialNumber
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewUID == nil {
		o.NewUID = NewUID
	}
	return o
}

// validate checks o after withDefaults; its errors name the field.
func (o Options) validate() error {
	if o.SeriesNumber < 0 || o.SeriesNumber > math.MaxInt32 {
		return fmt.Errorf("SeriesNumber %d out of range", o.SeriesNumber)
	}
	if !validCS(o.ContentLabel) {
		return fmt.Errorf("ContentLabel %q: must be 1-16 of A-Z, 0-9, space and underscore", o.ContentLabel)
	}
	for _, f := range []struct {
		name, value string
		required    bool
	}{
		{"AlgorithmName", o.AlgorithmName, true},
		{"AlgorithmVersion", o.AlgorithmVersion, true},
		{"SeriesDescription", o.SeriesDescription, false},
		{"ContentDescription", o.ContentDescription, false},
		{"ContentCreator", o.ContentCreator, false},
		{"Manufacturer", o.Manufacturer, false},
		{"ManufacturerModelName", o.ManufacturerModelName, false},
		{"SoftwareVersions", o.SoftwareVersions, false},
		{"DeviceSerialNumber", o.DeviceSerialNumber, false},
	} {
		if f.required && strings.TrimSpace(f.value) == "" {
			return fmt.Errorf("%s is required", f.name)
		}
		if err := checkLO(f.value); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// Result is an encoded SEG instance.
type Result struct {
	// Bytes is the Part 10 file: preamble, file meta information and the dataset
	// in Explicit VR Little Endian.
	Bytes []byte
	// SeriesInstanceUID and SOPInstanceUID are the new UIDs of the SEG.
	SeriesInstanceUID string
	SOPInstanceUID    string
	// Frames is NumberOfFrames.
	Frames int
	// Segments[n-1] is the Label of segment number n.
	Segments []int
}

// Encode returns a BINARY DICOM SEG of the label volume labels on v's grid,
// describing segs. labels has v.Cols*v.Rows*v.Depth voxels, voxel (i, j, k) at
// index i + Cols*(j + Rows*k), each 0 (background) or the Label of one of segs.
// Patient and study attributes come from v.Header; every call makes new series
// and instance UIDs. Encode returns an error naming the problem for bad input.
func Encode(v *volume.Volume, labels []uint8, segs []Segment, opts Options) (*Result, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	if err := checkVolume(v); err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	if want, ok := checked.Mul(v.Cols, v.Rows, v.Depth); !ok || len(labels) != want {
		return nil, fmt.Errorf("labels: %d voxels, volume has %dx%dx%d = %d", len(labels), v.Cols, v.Rows, v.Depth, want)
	}
	segs, err := sortSegments(segs)
	if err != nil {
		return nil, err
	}
	frames, err := planFrames(v, labels, segs)
	if err != nil {
		return nil, err
	}
	n, err := pixelDataLength(len(frames), v.Rows, v.Cols, 1)
	if err != nil {
		return nil, err
	}

	e := &encoder{v: v, segs: segs, frames: frames, opts: opts}
	return e.encode(packBinary(labels, v.Cols, v.Rows, frames, n))
}

// encode makes the UIDs and writes the dataset around pixels.
func (e *encoder) encode(pixels []byte) (*Result, error) {
	e.now, e.series, e.sop, e.dimOrg = e.opts.Now(), e.opts.NewUID(), e.opts.NewUID(), e.opts.NewUID()
	ds, err := e.dataset(pixels)
	if err != nil {
		return nil, fmt.Errorf("build dataset: %w", err)
	}
	var buf bytes.Buffer
	if err := dicom.Write(&buf, ds); err != nil {
		return nil, fmt.Errorf("write dataset: %w", err)
	}
	numbers := make([]int, len(e.segs))
	for i, s := range e.segs {
		numbers[i] = s.Label
	}
	return &Result{
		Bytes:             buf.Bytes(),
		SeriesInstanceUID: e.series,
		SOPInstanceUID:    e.sop,
		Frames:            len(e.frames),
		Segments:          numbers,
	}, nil
}

// overlap is SegmentsOverlap: a label volume's segments cannot overlap;
// fractional ones are measured.
func (e *encoder) overlap() string {
	if e.overlaps {
		return "YES"
	}
	return "NO"
}

// checkVolume checks that v has what a SEG on its grid needs.
func checkVolume(v *volume.Volume) error {
	switch {
	case v == nil:
		return errors.New("nil volume")
	case v.Cols <= 0 || v.Rows <= 0 || v.Depth <= 0:
		return fmt.Errorf("size %dx%dx%d: must be positive", v.Cols, v.Rows, v.Depth)
	case v.Cols > math.MaxUint16 || v.Rows > math.MaxUint16:
		return fmt.Errorf("size %dx%d: rows and columns must fit in 16 bits", v.Cols, v.Rows)
	case v.Depth > math.MaxInt32:
		// Slice k is written as k+1 in DimensionIndexValues (UL) and as
		// frames in NumberOfFrames (IS).
		return fmt.Errorf("depth %d: more slices than a SEG can reference", v.Depth)
	case len(v.Slices) != v.Depth:
		return fmt.Errorf("%d slices for depth %d", len(v.Slices), v.Depth)
	case v.Header == nil:
		return errors.New("no header dataset")
	case v.SeriesInstanceUID == "":
		return errors.New("no SeriesInstanceUID")
	case v.FrameOfReferenceUID == "":
		return errors.New("no FrameOfReferenceUID")
	case headerString(v.Header, tag.StudyInstanceUID) == "":
		return errors.New("header has no StudyInstanceUID")
	}
	for i, s := range v.Spacing {
		if !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("spacing[%d] = %v: must be positive", i, s)
		}
	}
	for k, s := range v.Slices {
		if s.SOPInstanceUID == "" || s.SOPClassUID == "" {
			return fmt.Errorf("slice %d: missing SOPInstanceUID or SOPClassUID", k)
		}
	}
	return nil
}

// sortSegments checks segs and returns a copy in SegmentNumber order.
func sortSegments(segs []Segment) ([]Segment, error) {
	if len(segs) == 0 {
		return nil, errors.New("no segments")
	}
	segs = slices.Clone(segs)
	slices.SortFunc(segs, func(a, b Segment) int { return a.Label - b.Label })
	for i, s := range segs {
		if s.Label < 1 || s.Label > 255 {
			return nil, fmt.Errorf("segment %q: label %d not in 1..255", s.Name, s.Label)
		}
		if i > 0 && segs[i-1].Label == s.Label {
			return nil, fmt.Errorf("segments %q and %q: same label %d", segs[i-1].Name, s.Name, s.Label)
		}
		if strings.TrimSpace(s.Name) == "" {
			return nil, fmt.Errorf("segment label %d: name is required", s.Label)
		}
		if err := checkLO(s.Name); err != nil {
			return nil, fmt.Errorf("segment label %d: name: %w", s.Label, err)
		}
		if err := checkCode(s.Category); err != nil {
			return nil, fmt.Errorf("segment %q: category: %w", s.Name, err)
		}
		if err := checkCode(s.Type); err != nil {
			return nil, fmt.Errorf("segment %q: type: %w", s.Name, err)
		}
	}
	return segs, nil
}

// planFrames lists the frames of the SEG in segment, then slice order,
// following the empty-frame policy of the package doc. segs is sorted.
func planFrames(v *volume.Volume, labels []uint8, segs []Segment) ([]frameRef, error) {
	var segOf [256]int // label -> SegmentNumber, 0 if not described
	for i, s := range segs {
		segOf[s.Label] = i + 1
	}
	// present[n-1][k]: segment n has a voxel on slice k.
	present := make([][]bool, len(segs))
	for i := range present {
		present[i] = make([]bool, v.Depth)
	}
	npix := v.Cols * v.Rows
	for idx, l := range labels {
		if l == 0 {
			continue
		}
		n := segOf[l]
		if n == 0 {
			i, j, k := idx%v.Cols, idx/v.Cols%v.Rows, idx/npix
			return nil, fmt.Errorf("labels: voxel (%d,%d,%d) has value %d, which no segment describes", i, j, k, l)
		}
		present[n-1][idx/npix] = true
	}
	var frames []frameRef
	for i, s := range segs {
		before := len(frames)
		for k, ok := range present[i] {
			if ok {
				frames = append(frames, frameRef{segment: i + 1, label: uint8(s.Label), k: k})
			}
		}
		if len(frames) == before {
			frames = append(frames, frameRef{segment: i + 1, label: uint8(s.Label), k: 0})
		}
	}
	return frames, nil
}

// encoder holds what building one SEG dataset needs.
type encoder struct {
	fractional, overlaps bool
	v                    *volume.Volume
	segs                 []Segment
	frames               []frameRef
	opts                 Options
	now                  time.Time
	series, sop, dimOrg  string
}

// dataset builds the SEG dataset, file meta information included.
func (e *encoder) dataset(pixels []byte) (dicom.Dataset, error) {
	b := &builder{}
	v, o := e.v, e.opts
	date, tm := e.now.Format("20060102"), e.now.Format("150405")

	els := []*dicom.Element{
		// File meta information (PS3.10 7.1).
		b.el(tag.FileMetaInformationVersion, []byte{0, 1}),
		b.str(tag.MediaStorageSOPClassUID, SegmentationStorage),
		b.str(tag.MediaStorageSOPInstanceUID, e.sop),
		b.str(tag.TransferSyntaxUID, transferSyntax),
		b.str(tag.ImplementationClassUID, implementationClassUID),
		b.str(tag.ImplementationVersionName, implementationVersionName),

		// SOP Common.
		b.str(tag.SOPClassUID, SegmentationStorage),
		b.str(tag.SOPInstanceUID, e.sop),
		b.str(tag.InstanceCreationDate, date),
		b.str(tag.InstanceCreationTime, tm),

		// General Series, Segmentation Series.
		b.str(tag.Modality, "SEG"),
		b.str(tag.SeriesInstanceUID, e.series),
		b.str(tag.SeriesNumber, strconv.Itoa(o.SeriesNumber)),
		b.str(tag.SeriesDescription, o.SeriesDescription),
		b.str(tag.SeriesDate, date),
		b.str(tag.SeriesTime, tm),

		// Frame of Reference.
		b.str(tag.FrameOfReferenceUID, v.FrameOfReferenceUID),
		b.str(tag.PositionReferenceIndicator, ""),

		// General Equipment, Enhanced General Equipment.
		b.str(tag.Manufacturer, o.Manufacturer),
		b.str(tag.ManufacturerModelName, o.ManufacturerModelName),
		b.str(tag.DeviceSerialNumber, o.DeviceSerialNumber),
		b.str(tag.SoftwareVersions, o.SoftwareVersions),

		// General Image, Segmentation Image (Content Identification macro).
		b.el(tag.ImageType, []string{"DERIVED", "PRIMARY"}),
		b.str(tag.InstanceNumber, "1"),
		b.str(tag.ContentDate, date),
		b.str(tag.ContentTime, tm),
		b.str(tag.ContentLabel, o.ContentLabel),
		b.str(tag.ContentDescription, o.ContentDescription),
		b.str(tag.ContentCreatorName, o.ContentCreator),
		b.str(tag.LossyImageCompression, "00"),
		b.str(tag.SegmentsOverlap, e.overlap()),
		e.segmentSequence(b),

		// Image Pixel.
		b.ints(tag.SamplesPerPixel, 1),
		b.str(tag.PhotometricInterpretation, "MONOCHROME2"),
		b.ints(tag.Rows, v.Rows),
		b.ints(tag.Columns, v.Cols),
		b.ints(tag.PixelRepresentation, 0),
		pixelData(pixels),

		// Multi-frame Functional Groups, Multi-frame Dimension.
		b.str(tag.NumberOfFrames, strconv.Itoa(len(e.frames))),
		e.sharedGroups(b),
		e.perFrameGroups(b),
		b.seq(tag.DimensionOrganizationSequence, []*dicom.Element{
			b.str(tag.DimensionOrganizationUID, e.dimOrg),
		}),
		e.dimensionIndex(b),

		// Common Instance Reference.
		e.referencedSeries(b),
	}
	if e.fractional {
		els = append(els,
			b.str(tag.SegmentationType, "FRACTIONAL"),
			b.str(tag.SegmentationFractionalType, "PROBABILITY"),
			b.ints(tag.MaximumFractionalValue, MaxFractionalValue),
			b.ints(tag.BitsAllocated, 8),
			b.ints(tag.BitsStored, 8),
			b.ints(tag.HighBit, 7),
		)
	} else {
		els = append(els,
			b.str(tag.SegmentationType, "BINARY"),
			b.ints(tag.BitsAllocated, 1),
			b.ints(tag.BitsStored, 1),
			b.ints(tag.HighBit, 0),
		)
	}
	// Patient, General Study and Patient Study, from the source instance.
	// The library decodes strings to UTF-8 and writes them back as such, so a
	// non-ASCII value needs the UTF-8 character set whatever the source used.
	utf8 := false
	for _, c := range []struct {
		t     tag.Tag
		type2 bool
	}{
		{tag.PatientName, true},
		{tag.PatientID, true},
		{tag.IssuerOfPatientID, false},
		{tag.PatientBirthDate, true},
		{tag.PatientSex, true},
		{tag.PatientAge, false},
		{tag.PatientSize, false},
		{tag.PatientWeight, false},
		{tag.StudyInstanceUID, true},
		{tag.StudyDate, true},
		{tag.StudyTime, true},
		{tag.ReferringPhysicianName, true},
		{tag.StudyID, true},
		{tag.AccessionNumber, true},
		{tag.StudyDescription, false},
	} {
		vals, ok := headerStrings(v.Header, c.t)
		if !ok && !c.type2 {
			continue
		}
		for _, s := range vals {
			utf8 = utf8 || !isASCII(s)
		}
		els = append(els, b.el(c.t, vals))
	}
	if utf8 {
		els = append(els, b.str(tag.SpecificCharacterSet, "ISO_IR 192"))
	}
	if b.err != nil {
		return dicom.Dataset{}, b.err
	}
	sortElements(els)
	return dicom.Dataset{Elements: els}, nil
}

// segmentSequence describes each segment (Segment Description macro).
func (e *encoder) segmentSequence(b *builder) *dicom.Element {
	items := make([][]*dicom.Element, len(e.segs))
	for i, s := range e.segs {
		lab := cieLab(s.RGB)
		items[i] = []*dicom.Element{
			b.ints(tag.SegmentNumber, i+1),
			b.str(tag.SegmentLabel, s.Name),
			b.str(tag.SegmentAlgorithmType, "AUTOMATIC"),
			b.str(tag.SegmentAlgorithmName, e.opts.AlgorithmName),
			b.seq(tag.SegmentationAlgorithmIdentificationSequence, []*dicom.Element{
				b.seq(tag.AlgorithmFamilyCodeSequence, b.code(e.codeArtificialIntelligence())),
				b.str(tag.AlgorithmName, e.opts.AlgorithmName),
				b.str(tag.AlgorithmVersion, e.opts.AlgorithmVersion),
			}),
			b.seq(tag.SegmentedPropertyCategoryCodeSequence, b.code(s.Category)),
			b.seq(tag.SegmentedPropertyTypeCodeSequence, b.code(s.Type)),
			b.ints(tag.RecommendedDisplayCIELabValue, lab[:]...),
		}
	}
	return b.seq(tag.SegmentSequence, items...)
}

// sharedGroups holds the functional groups common to all frames: the grid's
// pixel spacing and orientation.
func (e *encoder) sharedGroups(b *builder) *dicom.Element {
	v := e.v
	d := v.Direction
	return b.seq(tag.SharedFunctionalGroupsSequence, []*dicom.Element{
		b.seq(tag.PixelMeasuresSequence, []*dicom.Element{
			// PixelSpacing is row spacing (between rows, along j), then column spacing.
			b.ds(tag.PixelSpacing, v.Spacing[1], v.Spacing[0]),
			b.ds(tag.SliceThickness, v.Spacing[2]),
			b.ds(tag.SpacingBetweenSlices, v.Spacing[2]),
		}),
		b.seq(tag.PlaneOrientationSequence, []*dicom.Element{
			b.ds(tag.ImageOrientationPatient, d[0][0], d[0][1], d[0][2], d[1][0], d[1][1], d[1][2]),
		}),
	})
}

// perFrameGroups holds, for each frame, its source image, dimension index
// values, position and segment.
func (e *encoder) perFrameGroups(b *builder) *dicom.Element {
	items := make([][]*dicom.Element, len(e.frames))
	for f, fr := range e.frames {
		src := e.v.Slices[fr.k]
		source := []*dicom.Element{
			b.str(tag.ReferencedSOPClassUID, src.SOPClassUID),
			b.str(tag.ReferencedSOPInstanceUID, src.SOPInstanceUID),
			b.seq(tag.PurposeOfReferenceCodeSequence, b.code(e.codeSourceImage())),
		}
		if src.Frame > 0 {
			// A frame of a multi-frame source (Image SOP Instance Reference macro).
			source = append(source, b.str(tag.ReferencedFrameNumber, strconv.Itoa(src.Frame)))
		}
		items[f] = []*dicom.Element{
			b.seq(tag.DerivationImageSequence, []*dicom.Element{
				b.seq(tag.SourceImageSequence, source),
				b.seq(tag.DerivationCodeSequence, b.code(e.codeSegmentation())),
			}),
			b.seq(tag.FrameContentSequence, []*dicom.Element{
				b.ints(tag.DimensionIndexValues, fr.segment, fr.k+1),
			}),
			b.seq(tag.PlanePositionSequence, []*dicom.Element{
				b.ds(tag.ImagePositionPatient, src.Position[0], src.Position[1], src.Position[2]),
			}),
			b.seq(tag.SegmentIdentificationSequence, []*dicom.Element{
				b.ints(tag.ReferencedSegmentNumber, fr.segment),
			}),
		}
	}
	return b.seq(tag.PerFrameFunctionalGroupsSequence, items...)
}

// dimensionIndex declares the two dimensions of DimensionIndexValues: segment
// number, then plane position.
func (e *encoder) dimensionIndex(b *builder) *dicom.Element {
	dim := func(index, group tag.Tag, label string) []*dicom.Element {
		return []*dicom.Element{
			b.str(tag.DimensionOrganizationUID, e.dimOrg),
			b.ints(tag.DimensionIndexPointer, int(index.Group), int(index.Element)),
			b.ints(tag.FunctionalGroupPointer, int(group.Group), int(group.Element)),
			b.str(tag.DimensionDescriptionLabel, label),
		}
	}
	return b.seq(tag.DimensionIndexSequence,
		dim(tag.ReferencedSegmentNumber, tag.SegmentIdentificationSequence, "ReferencedSegmentNumber"),
		dim(tag.ImagePositionPatient, tag.PlanePositionSequence, "ImagePositionPatient"),
	)
}

// referencedSeries lists every source instance (Common Instance Reference).
func (e *encoder) referencedSeries(b *builder) *dicom.Element {
	var refs [][]*dicom.Element
	seen := make(map[string]bool, len(e.v.Slices))
	for _, s := range e.v.Slices {
		// Planes of one multi-frame source instance share a SOPInstanceUID.
		if seen[s.SOPInstanceUID] {
			continue
		}
		seen[s.SOPInstanceUID] = true
		refs = append(refs, []*dicom.Element{
			b.str(tag.ReferencedSOPClassUID, s.SOPClassUID),
			b.str(tag.ReferencedSOPInstanceUID, s.SOPInstanceUID),
		})
	}
	return b.seq(tag.ReferencedSeriesSequence, []*dicom.Element{
		b.str(tag.SeriesInstanceUID, e.v.SeriesInstanceUID),
		b.seq(tag.ReferencedInstanceSequence, refs...),
	})
}

// pixelData returns the PixelData element holding packed bits as OB. The
// library's native pixel writer handles 8, 16 and 32 bits only, so the bytes go
// through its "unprocessed" path, which writes them as they are.
func pixelData(packed []byte) *dicom.Element {
	return &dicom.Element{
		Tag:                    tag.PixelData,
		ValueRepresentation:    tag.VRPixelData,
		RawValueRepresentation: "OB",
		Value: mustPixelValue(dicom.PixelDataInfo{
			IntentionallyUnprocessed: true,
			UnprocessedValueData:     packed,
		}),
	}
}

// mustPixelValue wraps NewValue, which cannot fail for a PixelDataInfo.
func mustPixelValue(p dicom.PixelDataInfo) dicom.Value {
	val, err := dicom.NewValue(p)
	if err != nil {
		panic(fmt.Sprintf("dicomseg: pixel data value: %v", err))
	}
	return val
}

// headerStrings returns the string values of t in h and whether h has t.
func headerStrings(h *dicom.Dataset, t tag.Tag) ([]string, bool) {
	el, err := h.FindElementByTag(t)
	if err != nil || el.Value == nil {
		return []string{}, false
	}
	s, ok := el.Value.GetValue().([]string)
	if !ok {
		return []string{}, false
	}
	// Trim the padding some parsers leave in place.
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strings.TrimRight(x, " \x00")
	}
	if len(out) == 1 && out[0] == "" {
		out = []string{}
	}
	return out, true
}

// headerString returns the first value of t in h, or "".
func headerString(h *dicom.Dataset, t tag.Tag) string {
	s, _ := headerStrings(h, t)
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// validCS reports whether s is a valid single Code String value.
func validCS(s string) bool {
	if s == "" || len(s) > 16 || strings.Trim(s, " ") == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ' ' || r == '_') {
			return false
		}
	}
	return true
}

// checkLO checks that s fits a single-valued LO (or PN component group): at
// most 64 characters, no backslash (the value separator) and no control
// characters.
func checkLO(s string) error {
	if n := len([]rune(s)); n > 64 {
		return fmt.Errorf("%d characters, at most 64 allowed", n)
	}
	for _, r := range s {
		if r == '\\' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q: backslash or control character", s)
		}
	}
	return nil
}

// checkCode checks a coded concept for the Code Sequence macro.
func checkCode(c Code) error {
	if c.Value == "" || c.Scheme == "" || c.Meaning == "" {
		return fmt.Errorf("%+v: value, scheme and meaning are required", c)
	}
	if len(c.Scheme) > 16 {
		return fmt.Errorf("scheme %q longer than 16 characters", c.Scheme)
	}
	if err := checkLO(c.Meaning); err != nil {
		return fmt.Errorf("meaning: %w", err)
	}
	if strings.ContainsAny(c.Value+c.Scheme, `\`) {
		return fmt.Errorf("%+v: backslash in value or scheme", c)
	}
	return nil
}

// isASCII reports whether s is 7-bit ASCII.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
