package preview

import (
	"cmp"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/segbridge/segbridge/internal/dicomds"
	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/volume"
)

// SecondaryCaptureStorage is the SOP Class UID of the preview instances.
const SecondaryCaptureStorage = "1.2.840.10008.5.1.4.1.1.7"

// CaptionHeight is the height of the black band below each preview image
// that says, burned in, what the image is. The image above it is the source
// slice, pixel for pixel.
const CaptionHeight = 30

// captionLines are burned into every preview instance.
var captionLines = [...]string{"AI PREVIEW", "NOT FOR DIAGNOSIS"}

// Defaults of SeriesOptions.
const (
	DefaultSeriesNumber      = 9002
	DefaultSeriesDescription = "AI preview - not for diagnosis"
)

// SeriesOptions describe the preview series. The zero value of a field means
// its default.
type SeriesOptions struct {
	// AlgorithmName and AlgorithmVersion name the model in the derivation
	// description. Both are required.
	AlgorithmName    string
	AlgorithmVersion string
	// SeriesNumber of the preview series. Default 9002, after the SEG's
	// 9000 and the SR's 9001.
	SeriesNumber int
	// SeriesDescription. Default "AI preview - not for diagnosis".
	SeriesDescription string
	// Manufacturer and SoftwareVersions of the equipment. Defaults
	// "segbridge" and "segbridge".
	Manufacturer     string
	SoftwareVersions string
	// Now gives the dates and times. Default time.Now.
	Now func() time.Time
	// NewUID makes the SeriesInstanceUID, then each instance's
	// SOPInstanceUID in slice order. Default dicomseg.NewUID; a worker passes
	// dicomseg.DerivedUIDs so that a repeated attempt stores the same series.
	NewUID func() string
}

func (o SeriesOptions) withDefaults() SeriesOptions {
	if o.SeriesNumber == 0 {
		o.SeriesNumber = DefaultSeriesNumber
	}
	if o.SeriesDescription == "" {
		o.SeriesDescription = DefaultSeriesDescription
	}
	if o.Manufacturer == "" {
		o.Manufacturer = dicomseg.DefaultManufacturer
	}
	if o.SoftwareVersions == "" {
		o.SoftwareVersions = dicomseg.DefaultSoftwareVersions
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewUID == nil {
		o.NewUID = dicomseg.NewUID
	}
	return o
}

// Instance is one encoded preview instance.
type Instance struct {
	Bytes          []byte
	SOPInstanceUID string
	// Slice is the index of the source slice it shows.
	Slice int
}

// SeriesResult is an encoded preview series.
type SeriesResult struct {
	SeriesInstanceUID string
	Instances         []Instance
}

// EncodeSeries writes one Secondary Capture instance (RGB, uncompressed) per
// source slice of v that holds a voxel of segs: the slice as acquired, grey,
// windowed like Planes, with the mask tinted and outlined in each segment's
// colour, above a black band that reads "AI PREVIEW / NOT FOR DIAGNOSIS".
// Each instance is flagged DERIVED\SECONDARY with burned-in annotation, names
// its source image, and carries the source's patient and study, with
// Modality OT so that nothing queues it for segmentation. A segmentation
// with no voxel gives an error wrapping ErrEmpty.
func EncodeSeries(v *volume.Volume, labels []uint8, segs []Segment, opts SeriesOptions) (*SeriesResult, error) {
	opts = opts.withDefaults()
	if err := checkInput(v, labels); err != nil {
		return nil, err
	}
	switch {
	case v.Header == nil || dicomds.HeaderString(v.Header, tag.StudyInstanceUID) == "":
		return nil, errors.New("preview: source header has no StudyInstanceUID")
	case len(v.Slices) != v.Depth:
		return nil, fmt.Errorf("preview: %d slices for depth %d", len(v.Slices), v.Depth)
	case strings.TrimSpace(opts.AlgorithmName) == "" || strings.TrimSpace(opts.AlgorithmVersion) == "":
		return nil, errors.New("preview: AlgorithmName and AlgorithmVersion are required")
	case v.Rows+CaptionHeight > math.MaxUint16:
		return nil, fmt.Errorf("preview: %d rows do not fit a preview image", v.Rows)
	}
	pal := palette(segs)
	plane := v.Cols * v.Rows
	var withMask []int
	for k := range v.Depth {
		for _, l := range labels[k*plane : (k+1)*plane] {
			if pal[l] != nil {
				withMask = append(withMask, k)
				break
			}
		}
	}
	if len(withMask) == 0 {
		return nil, ErrEmpty
	}
	win := window(v.Data)
	now := opts.Now()
	res := &SeriesResult{SeriesInstanceUID: opts.NewUID()}
	for n, k := range withMask {
		img := image.NewRGBA(image.Rect(0, 0, v.Cols, v.Rows+CaptionHeight))
		overlay(img, 0, 0, v.Cols, v.Rows, labels[k*plane:(k+1)*plane], v.Data[k*plane:(k+1)*plane], pal, win)
		caption(img, v.Rows)
		uid := opts.NewUID()
		b, err := encodeInstance(v, k, n+1, img, res.SeriesInstanceUID, uid, now, opts)
		if err != nil {
			return nil, fmt.Errorf("preview of slice %d: %w", k, err)
		}
		res.Instances = append(res.Instances, Instance{Bytes: b, SOPInstanceUID: uid, Slice: k})
	}
	return res, nil
}

// caption fills the band below row top with black and writes the caption in
// white.
func caption(img *image.RGBA, top int) {
	b := img.Bounds()
	for y := top; y < b.Max.Y; y++ {
		for x := 0; x < b.Max.X; x++ {
			img.SetRGBA(x, y, color.RGBA{0, 0, 0, 255})
		}
	}
	d := font.Drawer{Dst: img, Src: image.White, Face: basicfont.Face7x13}
	for i, line := range captionLines {
		d.Dot = fixed.P(2, top+12+13*i)
		d.DrawString(line)
	}
}

// encodeInstance writes one Secondary Capture instance of img.
func encodeInstance(v *volume.Volume, k, number int, img *image.RGBA, series, sop string, now time.Time, o SeriesOptions) ([]byte, error) {
	b := &dicomds.Builder{}
	src := v.Slices[k]
	date, tm := now.Format("20060102"), now.Format("150405")
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	rgb := make([]byte, 0, w*h*3)
	for i := 0; i < len(img.Pix); i += 4 {
		rgb = append(rgb, img.Pix[i], img.Pix[i+1], img.Pix[i+2])
	}
	source := []*dicom.Element{
		b.Str(tag.ReferencedSOPClassUID, src.SOPClassUID),
		b.Str(tag.ReferencedSOPInstanceUID, src.SOPInstanceUID),
		b.Seq(tag.PurposeOfReferenceCodeSequence, b.Code("121322", "DCM", "Source image for image processing operation")),
	}
	if src.Frame > 0 {
		source = append(source, b.Str(tag.ReferencedFrameNumber, strconv.Itoa(src.Frame)))
	}
	els := b.FileMeta(SecondaryCaptureStorage, sop)
	els = append(els,
		// SOP Common.
		b.Str(tag.SOPClassUID, SecondaryCaptureStorage),
		b.Str(tag.SOPInstanceUID, sop),
		b.Str(tag.InstanceCreationDate, date),
		b.Str(tag.InstanceCreationTime, tm),

		// General Series: OT, so no trigger takes it for a series to segment.
		b.Str(tag.Modality, "OT"),
		b.Str(tag.SeriesInstanceUID, series),
		b.Str(tag.SeriesNumber, strconv.Itoa(o.SeriesNumber)),
		b.Str(tag.SeriesDescription, dicomds.TruncateLO(o.SeriesDescription)),
		b.Str(tag.SeriesDate, date),
		b.Str(tag.SeriesTime, tm),
		// Type 2C: required when the body part is paired, which a preview
		// cannot know; empty says unknown.
		b.Str(tag.Laterality, ""),

		// General Equipment, SC Equipment.
		b.Str(tag.Manufacturer, dicomds.TruncateLO(o.Manufacturer)),
		b.Str(tag.SoftwareVersions, dicomds.TruncateLO(o.SoftwareVersions)),
		b.Str(tag.ConversionType, "WSD"),

		// General Image, SC Image.
		b.Str(tag.InstanceNumber, strconv.Itoa(number)),
		b.Strs(tag.PatientOrientation, orientationLetters(v.Direction[0]), orientationLetters(v.Direction[1])),
		b.Str(tag.ContentDate, date),
		b.Str(tag.ContentTime, tm),
		b.Strs(tag.ImageType, "DERIVED", "SECONDARY"),
		b.Str(tag.DerivationDescription, dicomds.TruncateLO("AI segmentation overlay, not for diagnosis")),
		b.Seq(tag.DerivationCodeSequence, b.Code("113076", "DCM", "Segmentation")),
		b.Seq(tag.SourceImageSequence, source),
		b.Str(tag.ImageComments, "Preview of the segmentation by "+o.AlgorithmName+" "+o.AlgorithmVersion+
			" drawn on the source image. Derived image, not for diagnosis: read the SEG series."),
		b.Str(tag.BurnedInAnnotation, "YES"),
		b.Str(tag.LossyImageCompression, "00"),
		b.Str(tag.DateOfSecondaryCapture, date),
		b.Str(tag.TimeOfSecondaryCapture, tm),

		// Image Pixel.
		b.Ints(tag.SamplesPerPixel, 3),
		b.Str(tag.PhotometricInterpretation, "RGB"),
		b.Ints(tag.PlanarConfiguration, 0),
		b.Ints(tag.Rows, h),
		b.Ints(tag.Columns, w),
		b.Ints(tag.BitsAllocated, 8),
		b.Ints(tag.BitsStored, 8),
		b.Ints(tag.HighBit, 7),
		b.Ints(tag.PixelRepresentation, 0),
		pixelData(rgb),
	)
	els = append(els, b.PatientStudy(v.Header)...)
	return b.Write(els)
}

// pixelData returns a PixelData element of raw bytes, written as they are
// (the library's "unprocessed" path), as OB.
func pixelData(raw []byte) *dicom.Element {
	if len(raw)%2 == 1 {
		raw = append(raw, 0)
	}
	val, err := dicom.NewValue(dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: raw})
	if err != nil {
		// NewValue cannot fail for a PixelDataInfo.
		panic(fmt.Sprintf("preview: pixel data value: %v", err))
	}
	return &dicom.Element{Tag: tag.PixelData, ValueRepresentation: tag.VRPixelData, RawValueRepresentation: "OB", Value: val}
}

// orientationLetters names the patient direction of a unit vector (PS3.3
// C.7.6.1.1.1): L/R, P/A, H/F, strongest first, those above 0.25.
func orientationLetters(d [3]float64) string {
	type part struct {
		mag    float64
		letter byte
	}
	letters := [3][2]byte{{'L', 'R'}, {'P', 'A'}, {'H', 'F'}}
	var parts []part
	for a, c := range d {
		if math.Abs(c) < 0.25 {
			continue
		}
		l := letters[a][0]
		if c < 0 {
			l = letters[a][1]
		}
		parts = append(parts, part{math.Abs(c), l})
	}
	slices.SortStableFunc(parts, func(a, b part) int { return cmp.Compare(b.mag, a.mag) })
	var s strings.Builder
	for _, p := range parts {
		s.WriteByte(p.letter)
	}
	return s.String()
}
