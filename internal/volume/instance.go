package volume

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"

	"github.com/segbridge/segbridge/internal/checked"
)

// MaxDimension is the largest Rows or Columns an instance may have: the
// largest value of their VR, US.
const MaxDimension = math.MaxUint16

// Tolerances on the geometry of a single instance.
const (
	// unitTolerance is how far |IOP row| and |IOP column| may be from 1, and
	// their dot product from 0, before the orientation counts as corrupt.
	unitTolerance = 1e-2
)

// Instance is one parsed image instance, or one frame of a multi-frame one:
// its geometry, its identifiers, and its pixel data, validated but not yet
// placed in a volume.
//
// An enhanced multi-frame instance (Enhanced MR Image Storage and the like,
// with per-frame functional groups) is parsed into one Instance per frame in
// Frames, each with its own position, orientation, pixel spacing and rescale
// taken from its per-frame functional groups or, failing those, the shared
// ones; the outer Instance carries frame 1's geometry. Assemble places the
// frames, never the outer Instance.
//
// The pixels are kept as the bytes of the file's PixelData and decoded to
// float32 modality values only by Assemble, straight into the volume, so a
// series costs its encoded size plus the volume rather than twice the volume.
// Pixels decodes one instance on its own.
type Instance struct {
	SOPInstanceUID      string
	SOPClassUID         string
	SeriesInstanceUID   string
	FrameOfReferenceUID string
	Modality            string
	// InstanceNumber is informative only; slices are never ordered by it.
	InstanceNumber int
	// Frame is the 1-based frame number within a multi-frame instance, 0 for
	// a single-frame instance.
	Frame int
	// Frames holds one Instance per frame of an enhanced multi-frame
	// instance, in frame order; nil for a single-frame instance.
	Frames []*Instance

	// EchoNumber (EchoNumbers), EchoTime (EchoTime, or EffectiveEchoTime of
	// an enhanced frame), TemporalPosition (TemporalPositionIdentifier, or
	// TemporalPositionIndex of an enhanced frame) and AcquisitionNumber tell
	// the planes of a 4-D series apart; 0 when absent. Assemble uses them only
	// to say why planes share a position.
	EchoNumber        int
	EchoTime          float64
	TemporalPosition  int
	AcquisitionNumber int

	// Rows and Cols are the image size in pixels.
	Rows, Cols int
	// PixelSpacing is in DICOM order: [0] between rows, [1] between columns, in mm.
	PixelSpacing [2]float64
	// Orientation holds the unit vectors of increasing column
	// (ImageOrientationPatient[0:3]) and increasing row (ImageOrientationPatient[3:6]), LPS.
	Orientation [2][3]float64
	// Position is ImagePositionPatient, the centre of the first pixel, in mm (LPS).
	Position [3]float64
	// RescaleSlope and RescaleIntercept map stored values to modality values
	// (1 and 0 when absent).
	RescaleSlope, RescaleIntercept float64
	// SliceThickness and SpacingBetweenSlices in mm, 0 when absent. Assemble
	// uses them only for the depth spacing of a single-slice series.
	SliceThickness, SpacingBetweenSlices float64

	// Header is the instance's dataset without its PixelData element.
	Header *dicom.Dataset

	pix pixelFormat
	raw []byte
	// holder is held while the instance is reachable, when raw is a
	// buffer its parser's caller recycles (Parser.Release).
	holder *holder
}

// Normal returns the unit slice normal, Orientation[0] x Orientation[1].
func (in *Instance) Normal() [3]float64 {
	return unit(cross(in.Orientation[0], in.Orientation[1]))
}

// Pixels decodes the instance's pixels to modality values, row by row:
// pixel (col, row) at index col + Cols*row.
func (in *Instance) Pixels() []float32 {
	dst := make([]float32, in.Rows*in.Cols)
	in.decodeInto(dst, nil)
	return dst
}

// ParseInstance parses one DICOM Part-10 file holding a greyscale image: a
// classic single-frame instance, or an enhanced multi-frame one whose
// geometry is in per-frame or shared functional groups (see
// Instance.Frames). Uncompressed, deflated, RLE Lossless and JPEG (baseline,
// extended, lossless) pixel data are read; JPEG 2000, HTJ2K and JPEG-LS need
// a Parser with a FrameDecoder. Every error wraps
// ErrInvalidSeries: a non-image object, a transfer syntax this package does
// not decode, a multi-frame object without functional groups, a pixel format
// other than 8/16/32-bit MONOCHROME2 integers, missing or corrupt geometry,
// or bytes that are not well-formed DICOM.
func ParseInstance(data []byte) (*Instance, error) {
	return Parser{}.ParseInstance(context.Background(), data)
}

// newInstance reads the attributes of an image instance out of ds. On error it
// may return a partly filled Instance so the caller can name it.
func newInstance(ds *dicom.Dataset, ts string, src *pixelSource) (*Instance, error) {
	in := &Instance{}
	var err error
	if in.SOPInstanceUID, err = requiredString(ds, tag.SOPInstanceUID); err != nil {
		return nil, err
	}
	if in.SOPClassUID, err = requiredString(ds, tag.SOPClassUID); err != nil {
		return in, err
	}
	in.SeriesInstanceUID, _ = optionalString(ds, tag.SeriesInstanceUID)
	in.FrameOfReferenceUID, _ = optionalString(ds, tag.FrameOfReferenceUID)
	in.Modality, _ = optionalString(ds, tag.Modality)
	if n, ok, err := optionalInt(ds, tag.InstanceNumber); err == nil && ok {
		in.InstanceNumber = n
	}
	in.read4D(ds)

	if !src.scan.pixel.found {
		for _, t := range []tag.Tag{tag.FloatPixelData, tag.DoubleFloatPixelData} {
			if _, err := ds.FindElementByTag(t); err == nil {
				return in, errors.New("floating-point pixel data is not supported")
			}
		}
		return in, fmt.Errorf("not an image: SOP class %s (%s) has no pixel data", in.SOPClassUID, sopClassName(in.SOPClassUID))
	}
	frames, ok, err := optionalInt(ds, tag.NumberOfFrames)
	if err != nil {
		return in, err
	}
	if !ok {
		frames = 1
	}
	_, pfErr := ds.FindElementByTag(tag.PerFrameFunctionalGroupsSequence)
	enhanced := pfErr == nil
	switch {
	case frames < 1:
		return in, fmt.Errorf("NumberOfFrames is %d", frames)
	case frames > math.MaxInt32:
		return in, fmt.Errorf("NumberOfFrames %d is larger than %d, the most its IS value holds", frames, math.MaxInt32)
	case frames > 1 && !enhanced:
		return in, fmt.Errorf("multi-frame image without per-frame functional groups (NumberOfFrames %d, SOP class %s) "+
			"is not supported; send the series as classic single-frame or enhanced multi-frame images",
			frames, sopClassName(in.SOPClassUID))
	}

	if err := in.readPixelFormat(ds, ts); err != nil {
		return in, err
	}
	if in.raw, err = src.pixels(in, frames); err != nil {
		return in, err
	}
	// Rows and Columns are below 2^16 and a sample at most 4 bytes, so plane
	// fits; times up to 2^31 frames it may not.
	plane := in.Rows * in.Cols * in.pix.bytesPerSample()
	need, ok := checked.Mul(plane, frames)
	if !ok {
		return in, fmt.Errorf("%d frames of %dx%d pixels of %d bits are more bytes than can be addressed",
			frames, in.Cols, in.Rows, in.pix.bitsAllocated)
	}
	// Pixel data may be padded: one byte to an even length (PS3.5 8.1.1), or,
	// by some writers, more (pydicom's MR_small_padded). Padding shorter than
	// one plane cannot be a frame the header forgot, so it is ignored; more,
	// or less than needed, is a header that does not describe its pixels.
	if len(in.raw) < need || len(in.raw)-need >= max(plane, 2) {
		if frames > 1 {
			return in, fmt.Errorf("pixel data holds %d bytes, %d frames of %dx%d pixels of %d bits need %d",
				len(in.raw), frames, in.Cols, in.Rows, in.pix.bitsAllocated, need)
		}
		return in, fmt.Errorf("pixel data holds %d bytes, %dx%d pixels of %d bits need %d",
			len(in.raw), in.Cols, in.Rows, in.pix.bitsAllocated, need)
	}
	in.raw = in.raw[:need]

	header := &dicom.Dataset{Elements: make([]*dicom.Element, 0, len(ds.Elements)-1)}
	for _, e := range ds.Elements {
		if e.Tag != tag.PixelData && e.Tag != tag.PerFrameFunctionalGroupsSequence {
			header.Elements = append(header.Elements, e)
		}
	}
	in.Header = header

	if enhanced {
		if err := in.readFrames(ds, frames, plane); err != nil {
			return in, err
		}
		return in, nil
	}
	if err := in.readPlane(ds, ds, ds, ds); err != nil {
		return in, err
	}
	return in, nil
}

// readPlane reads the geometry and rescale of one image plane: position
// from pos, orientation from orient, pixel spacing and slice thickness from
// measures, and rescale from rescale. For a single-frame instance all four
// are the dataset itself; for a frame of an enhanced instance they are items
// of its functional groups.
func (in *Instance) readPlane(pos, orient, measures, rescale *dicom.Dataset) error {
	ipp, err := requiredFloats(pos, tag.ImagePositionPatient, 3)
	if err != nil {
		return err
	}
	iop, err := requiredFloats(orient, tag.ImageOrientationPatient, 6)
	if err != nil {
		return err
	}
	ps, err := requiredFloats(measures, tag.PixelSpacing, 2)
	if err != nil {
		return err
	}
	if err := in.setGeometry(ipp, iop, ps); err != nil {
		return err
	}
	if in.RescaleSlope, err = optionalFloat(rescale, tag.RescaleSlope, 1); err != nil {
		return err
	}
	if in.RescaleIntercept, err = optionalFloat(rescale, tag.RescaleIntercept, 0); err != nil {
		return err
	}
	if in.RescaleSlope == 0 {
		return errors.New("RescaleSlope is 0")
	}
	in.SliceThickness, _ = optionalFloat(measures, tag.SliceThickness, 0)
	in.SpacingBetweenSlices, _ = optionalFloat(measures, tag.SpacingBetweenSlices, 0)
	return nil
}

// read4D reads the attributes that tell the planes of a 4-D classic series apart.
func (in *Instance) read4D(ds *dicom.Dataset) {
	if n, ok, err := optionalInt(ds, tag.EchoNumbers); err == nil && ok {
		in.EchoNumber = n
	}
	if n, ok, err := optionalInt(ds, tag.TemporalPositionIdentifier); err == nil && ok {
		in.TemporalPosition = n
	}
	if n, ok, err := optionalInt(ds, tag.AcquisitionNumber); err == nil && ok {
		in.AcquisitionNumber = n
	}
	if f, err := optionalFloat(ds, tag.EchoTime, 0); err == nil {
		in.EchoTime = f
	}
}

func (in *Instance) readPixelFormat(ds *dicom.Dataset, ts string) error {
	bo, _, err := nativeTransferSyntax(ts)
	if err != nil {
		return err
	}
	in.pix.bigEndian = bo == binary.BigEndian
	spp, ok, err := optionalInt(ds, tag.SamplesPerPixel)
	if err != nil {
		return err
	}
	if ok && spp != 1 {
		return fmt.Errorf("SamplesPerPixel is %d: colour images are not supported", spp)
	}
	pi, _ := optionalString(ds, tag.PhotometricInterpretation)
	switch pi {
	case "MONOCHROME2", "":
	case "MONOCHROME1":
		// The modality LUT does not depend on the photometric interpretation,
		// but a MONOCHROME1 series shows low values bright, the reverse of
		// what a model trained on MONOCHROME2 images saw; refusing is safer
		// than guessing whether to invert.
		return errors.New("PhotometricInterpretation MONOCHROME1 (inverted grey scale) is not supported")
	default:
		return fmt.Errorf("PhotometricInterpretation %s is not supported; only MONOCHROME2 greyscale", pi)
	}
	if in.Rows, err = requiredInt(ds, tag.Rows); err != nil {
		return err
	}
	if in.Cols, err = requiredInt(ds, tag.Columns); err != nil {
		return err
	}
	if in.Rows <= 0 || in.Cols <= 0 {
		return fmt.Errorf("image size %dx%d is empty", in.Cols, in.Rows)
	}
	// Rows and Columns are US, but writers that ignore the dictionary use UL
	// or IS, whose values reach 2^32 and beyond: 2^31 x 2^31 x 4 bytes wraps
	// to 0. Bounding both keeps every size made from them inside an int.
	for _, d := range []struct {
		name string
		v    int
	}{{"Rows", in.Rows}, {"Columns", in.Cols}} {
		if d.v > MaxDimension {
			return fmt.Errorf("%s %d is larger than %d, the most a DICOM image dimension (US) holds", d.name, d.v, MaxDimension)
		}
	}
	ba, err := requiredInt(ds, tag.BitsAllocated)
	if err != nil {
		return err
	}
	if ba != 8 && ba != 16 && ba != 32 {
		return fmt.Errorf("BitsAllocated %d is not supported; only 8, 16 or 32", ba)
	}
	bs, ok, err := optionalInt(ds, tag.BitsStored)
	if err != nil {
		return err
	}
	if !ok {
		bs = ba
	}
	hb, ok, err := optionalInt(ds, tag.HighBit)
	if err != nil {
		return err
	}
	if !ok {
		hb = bs - 1
	}
	if bs < 1 || bs > ba || hb < bs-1 || hb >= ba {
		return fmt.Errorf("BitsStored %d / HighBit %d do not fit BitsAllocated %d", bs, hb, ba)
	}
	rep, _, err := optionalInt(ds, tag.PixelRepresentation)
	if err != nil {
		return err
	}
	if rep != 0 && rep != 1 {
		return fmt.Errorf("PixelRepresentation %d is neither 0 (unsigned) nor 1 (signed)", rep)
	}
	in.pix.bitsAllocated, in.pix.bitsStored, in.pix.highBit, in.pix.signed = ba, bs, hb, rep == 1
	return nil
}

// setGeometry checks and stores ImagePositionPatient, ImageOrientationPatient
// and PixelSpacing.
func (in *Instance) setGeometry(ipp, iop, ps []float64) error {
	copy(in.Position[:], ipp)
	copy(in.Orientation[0][:], iop[0:3])
	copy(in.Orientation[1][:], iop[3:6])
	copy(in.PixelSpacing[:], ps)
	if ps[0] <= 0 || ps[1] <= 0 {
		return fmt.Errorf("PixelSpacing %g\\%g is not positive", ps[0], ps[1])
	}
	r, c := norm(in.Orientation[0]), norm(in.Orientation[1])
	if math.Abs(r-1) > unitTolerance || math.Abs(c-1) > unitTolerance ||
		math.Abs(dot(in.Orientation[0], in.Orientation[1])) > unitTolerance {
		return fmt.Errorf("ImageOrientationPatient %v is not two orthogonal unit vectors", iop)
	}
	in.Orientation[0], in.Orientation[1] = unit(in.Orientation[0]), unit(in.Orientation[1])
	return nil
}

func sopClassName(sopClass string) string {
	if info, err := uid.Lookup(sopClass); err == nil {
		return info.Name
	}
	return "unknown SOP class"
}

// elementStrings returns the string values of t, or false when t is absent or not a string element.
func elementStrings(ds *dicom.Dataset, t tag.Tag) ([]string, bool) {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return nil, false
	}
	s, ok := e.Value.GetValue().([]string)
	return s, ok
}

func elementText(ds *dicom.Dataset, t tag.Tag) string {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return "absent"
	}
	if s, ok := e.Value.GetValue().([]string); ok {
		return strings.Join(s, `\`)
	}
	return e.Value.String()
}

func optionalString(ds *dicom.Dataset, t tag.Tag) (string, bool) {
	s, ok := elementStrings(ds, t)
	if !ok || len(s) == 0 {
		return "", false
	}
	v := strings.TrimSpace(strings.TrimRight(s[0], "\x00"))
	return v, v != ""
}

func requiredString(ds *dicom.Dataset, t tag.Tag) (string, error) {
	v, ok := optionalString(ds, t)
	if !ok {
		return "", fmt.Errorf("%s is missing", tagName(t))
	}
	return v, nil
}

// optionalInt reads a US/SS/UL/SL or IS element; ok is false when it is absent or empty.
func optionalInt(ds *dicom.Dataset, t tag.Tag) (v int, ok bool, err error) {
	e, ferr := ds.FindElementByTag(t)
	if ferr != nil || e.Value == nil {
		return 0, false, nil
	}
	switch vals := e.Value.GetValue().(type) {
	case []int:
		if len(vals) == 0 {
			return 0, false, nil
		}
		return vals[0], true, nil
	case []string:
		if len(vals) == 0 || strings.TrimSpace(vals[0]) == "" {
			return 0, false, nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(vals[0]))
		if err != nil {
			return 0, false, fmt.Errorf("%s %q is not an integer", tagName(t), vals[0])
		}
		return n, true, nil
	}
	return 0, false, fmt.Errorf("%s has an unexpected value type", tagName(t))
}

func requiredInt(ds *dicom.Dataset, t tag.Tag) (int, error) {
	v, ok, err := optionalInt(ds, t)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%s is missing", tagName(t))
	}
	return v, nil
}

// floats reads a DS, IS, FD or FL element; nil when it is absent or empty.
func floats(ds *dicom.Dataset, t tag.Tag) ([]float64, error) {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return nil, nil
	}
	var out []float64
	switch vals := e.Value.GetValue().(type) {
	case []float64:
		out = vals
	case []int:
		for _, v := range vals {
			out = append(out, float64(v))
		}
	case []string:
		for _, s := range vals {
			s = strings.TrimSpace(strings.TrimRight(s, "\x00"))
			if s == "" && len(vals) == 1 {
				return nil, nil
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("%s %q is not a number", tagName(t), strings.Join(vals, `\`))
			}
			out = append(out, f)
		}
	default:
		return nil, fmt.Errorf("%s has an unexpected value type", tagName(t))
	}
	for _, f := range out {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s holds a non-finite number", tagName(t))
		}
	}
	return out, nil
}

func requiredFloats(ds *dicom.Dataset, t tag.Tag, n int) ([]float64, error) {
	v, err := floats(ds, t)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%s is missing", tagName(t))
	}
	if len(v) != n {
		return nil, fmt.Errorf("%s has %d values, want %d", tagName(t), len(v), n)
	}
	return v, nil
}

func optionalFloat(ds *dicom.Dataset, t tag.Tag, def float64) (float64, error) {
	v, err := floats(ds, t)
	if err != nil {
		return def, err
	}
	if len(v) == 0 {
		return def, nil
	}
	return v[0], nil
}

func tagName(t tag.Tag) string {
	if info, err := tag.Find(t); err == nil {
		return info.Keyword
	}
	return t.String()
}
