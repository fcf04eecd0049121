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
	"github.com/segbridge/segbridge/internal/dicomds"
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
	case dicomds.HeaderString(v.Header, tag.StudyInstanceUID) == "":
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
	b := &dicomds.Builder{}
	v, o := e.v, e.opts
	date, tm := e.now.Format("20060102"), e.now.Format("150405")

	els := []*dicom.Element{
		// File meta information (PS3.10 7.1).
		b.El(tag.FileMetaInformationVersion, []byte{0, 1}),
		b.Str(tag.MediaStorageSOPClassUID, SegmentationStorage),
		b.Str(tag.MediaStorageSOPInstanceUID, e.sop),
		b.Str(tag.TransferSyntaxUID, transferSyntax),
		b.Str(tag.ImplementationClassUID, implementationClassUID),
		b.Str(tag.ImplementationVersionName, implementationVersionName),

		// SOP Common.
		b.Str(tag.SOPClassUID, SegmentationStorage),
		b.Str(tag.SOPInstanceUID, e.sop),
		b.Str(tag.InstanceCreationDate, date),
		b.Str(tag.InstanceCreationTime, tm),

		// General Series, Segmentation Series.
		b.Str(tag.Modality, "SEG"),
		b.Str(tag.SeriesInstanceUID, e.series),
		b.Str(tag.SeriesNumber, strconv.Itoa(o.SeriesNumber)),
		b.Str(tag.SeriesDescription, o.SeriesDescription),
		b.Str(tag.SeriesDate, date),
		b.Str(tag.SeriesTime, tm),

		// Frame of Reference.
		b.Str(tag.FrameOfReferenceUID, v.FrameOfReferenceUID),
		b.Str(tag.PositionReferenceIndicator, ""),

		// General Equipment, Enhanced General Equipment.
		b.Str(tag.Manufacturer, o.Manufacturer),
		b.Str(tag.ManufacturerModelName, o.ManufacturerModelName),
		b.Str(tag.DeviceSerialNumber, o.DeviceSerialNumber),
		b.Str(tag.SoftwareVersions, o.SoftwareVersions),

		// General Image, Segmentation Image (Content Identification macro).
		b.El(tag.ImageType, []string{"DERIVED", "PRIMARY"}),
		b.Str(tag.InstanceNumber, "1"),
		b.Str(tag.ContentDate, date),
		b.Str(tag.ContentTime, tm),
		b.Str(tag.ContentLabel, o.ContentLabel),
		b.Str(tag.ContentDescription, o.ContentDescription),
		b.Str(tag.ContentCreatorName, o.ContentCreator),
		b.Str(tag.LossyImageCompression, "00"),
		b.Str(tag.SegmentsOverlap, e.overlap()),
		e.segmentSequence(b),

		// Image Pixel.
		b.Ints(tag.SamplesPerPixel, 1),
		b.Str(tag.PhotometricInterpretation, "MONOCHROME2"),
		b.Ints(tag.Rows, v.Rows),
		b.Ints(tag.Columns, v.Cols),
		b.Ints(tag.PixelRepresentation, 0),
		pixelData(pixels),

		// Multi-frame Functional Groups, Multi-frame Dimension.
		b.Str(tag.NumberOfFrames, strconv.Itoa(len(e.frames))),
		e.sharedGroups(b),
		e.perFrameGroups(b),
		b.Seq(tag.DimensionOrganizationSequence, []*dicom.Element{
			b.Str(tag.DimensionOrganizationUID, e.dimOrg),
		}),
		e.dimensionIndex(b),

		// Common Instance Reference.
		e.referencedSeries(b),
	}
	if e.fractional {
		els = append(els,
			b.Str(tag.SegmentationType, "FRACTIONAL"),
			b.Str(tag.SegmentationFractionalType, "PROBABILITY"),
			b.Ints(tag.MaximumFractionalValue, MaxFractionalValue),
			b.Ints(tag.BitsAllocated, 8),
			b.Ints(tag.BitsStored, 8),
			b.Ints(tag.HighBit, 7),
		)
	} else {
		els = append(els,
			b.Str(tag.SegmentationType, "BINARY"),
			b.Ints(tag.BitsAllocated, 1),
			b.Ints(tag.BitsStored, 1),
			b.Ints(tag.HighBit, 0),
		)
	}
	// Patient, General Study and Patient Study, from the source instance.
	els = append(els, b.PatientStudy(v.Header)...)
	if err := b.Err(); err != nil {
		return dicom.Dataset{}, err
	}
	dicomds.Sort(els)
	return dicom.Dataset{Elements: els}, nil
}

// segmentSequence describes each segment (Segment Description macro).
func (e *encoder) segmentSequence(b *dicomds.Builder) *dicom.Element {
	items := make([][]*dicom.Element, len(e.segs))
	for i, s := range e.segs {
		lab := cieLab(s.RGB)
		items[i] = []*dicom.Element{
			b.Ints(tag.SegmentNumber, i+1),
			b.Str(tag.SegmentLabel, s.Name),
			b.Str(tag.SegmentAlgorithmType, "AUTOMATIC"),
			b.Str(tag.SegmentAlgorithmName, e.opts.AlgorithmName),
			b.Seq(tag.SegmentationAlgorithmIdentificationSequence, []*dicom.Element{
				b.Seq(tag.AlgorithmFamilyCodeSequence, codeItem(b, e.codeArtificialIntelligence())),
				b.Str(tag.AlgorithmName, e.opts.AlgorithmName),
				b.Str(tag.AlgorithmVersion, e.opts.AlgorithmVersion),
			}),
			b.Seq(tag.SegmentedPropertyCategoryCodeSequence, codeItem(b, s.Category)),
			b.Seq(tag.SegmentedPropertyTypeCodeSequence, codeItem(b, s.Type)),
			b.Ints(tag.RecommendedDisplayCIELabValue, lab[:]...),
		}
	}
	return b.Seq(tag.SegmentSequence, items...)
}

// sharedGroups holds the functional groups common to all frames: the grid's
// pixel spacing and orientation.
func (e *encoder) sharedGroups(b *dicomds.Builder) *dicom.Element {
	v := e.v
	d := v.Direction
	return b.Seq(tag.SharedFunctionalGroupsSequence, []*dicom.Element{
		b.Seq(tag.PixelMeasuresSequence, []*dicom.Element{
			// PixelSpacing is row spacing (between rows, along j), then column spacing.
			b.DS(tag.PixelSpacing, v.Spacing[1], v.Spacing[0]),
			b.DS(tag.SliceThickness, v.Spacing[2]),
			b.DS(tag.SpacingBetweenSlices, v.Spacing[2]),
		}),
		b.Seq(tag.PlaneOrientationSequence, []*dicom.Element{
			b.DS(tag.ImageOrientationPatient, d[0][0], d[0][1], d[0][2], d[1][0], d[1][1], d[1][2]),
		}),
	})
}

// perFrameGroups holds, for each frame, its source image, dimension index
// values, position and segment.
func (e *encoder) perFrameGroups(b *dicomds.Builder) *dicom.Element {
	items := make([][]*dicom.Element, len(e.frames))
	for f, fr := range e.frames {
		src := e.v.Slices[fr.k]
		source := []*dicom.Element{
			b.Str(tag.ReferencedSOPClassUID, src.SOPClassUID),
			b.Str(tag.ReferencedSOPInstanceUID, src.SOPInstanceUID),
			b.Seq(tag.PurposeOfReferenceCodeSequence, codeItem(b, e.codeSourceImage())),
		}
		if src.Frame > 0 {
			// A frame of a multi-frame source (Image SOP Instance Reference macro).
			source = append(source, b.Str(tag.ReferencedFrameNumber, strconv.Itoa(src.Frame)))
		}
		items[f] = []*dicom.Element{
			b.Seq(tag.DerivationImageSequence, []*dicom.Element{
				b.Seq(tag.SourceImageSequence, source),
				b.Seq(tag.DerivationCodeSequence, codeItem(b, e.codeSegmentation())),
			}),
			b.Seq(tag.FrameContentSequence, []*dicom.Element{
				b.Ints(tag.DimensionIndexValues, fr.segment, fr.k+1),
			}),
			b.Seq(tag.PlanePositionSequence, []*dicom.Element{
				b.DS(tag.ImagePositionPatient, src.Position[0], src.Position[1], src.Position[2]),
			}),
			b.Seq(tag.SegmentIdentificationSequence, []*dicom.Element{
				b.Ints(tag.ReferencedSegmentNumber, fr.segment),
			}),
		}
	}
	return b.Seq(tag.PerFrameFunctionalGroupsSequence, items...)
}

// dimensionIndex declares the two dimensions of DimensionIndexValues: segment
// number, then plane position.
func (e *encoder) dimensionIndex(b *dicomds.Builder) *dicom.Element {
	dim := func(index, group tag.Tag, label string) []*dicom.Element {
		return []*dicom.Element{
			b.Str(tag.DimensionOrganizationUID, e.dimOrg),
			b.Ints(tag.DimensionIndexPointer, int(index.Group), int(index.Element)),
			b.Ints(tag.FunctionalGroupPointer, int(group.Group), int(group.Element)),
			b.Str(tag.DimensionDescriptionLabel, label),
		}
	}
	return b.Seq(tag.DimensionIndexSequence,
		dim(tag.ReferencedSegmentNumber, tag.SegmentIdentificationSequence, "ReferencedSegmentNumber"),
		dim(tag.ImagePositionPatient, tag.PlanePositionSequence, "ImagePositionPatient"),
	)
}

// referencedSeries lists every source instance (Common Instance Reference).
func (e *encoder) referencedSeries(b *dicomds.Builder) *dicom.Element {
	var refs [][]*dicom.Element
	seen := make(map[string]bool, len(e.v.Slices))
	for _, s := range e.v.Slices {
		// Planes of one multi-frame source instance share a SOPInstanceUID.
		if seen[s.SOPInstanceUID] {
			continue
		}
		seen[s.SOPInstanceUID] = true
		refs = append(refs, []*dicom.Element{
			b.Str(tag.ReferencedSOPClassUID, s.SOPClassUID),
			b.Str(tag.ReferencedSOPInstanceUID, s.SOPInstanceUID),
		})
	}
	return b.Seq(tag.ReferencedSeriesSequence, []*dicom.Element{
		b.Str(tag.SeriesInstanceUID, e.v.SeriesInstanceUID),
		b.Seq(tag.ReferencedInstanceSequence, refs...),
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
