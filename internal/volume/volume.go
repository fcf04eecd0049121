// Package volume turns the instances of one DICOM image series into a 3-D voxel
// volume with its geometry in patient space (LPS, millimetres), the form every
// later stage (model input, SEG output) works on.
package volume

import (
	"github.com/suyashkumar/dicom"

	"github.com/segbridge/segbridge/internal/fault"
)

// Slice is one source image plane of a volume: the instance that voxel plane k came from.
type Slice struct {
	SOPInstanceUID string
	SOPClassUID    string
	// Frame is the 1-based frame number of the plane within a multi-frame
	// (enhanced) instance, 0 for a single-frame instance.
	Frame int
	// Position is the ImagePositionPatient of the plane's first voxel, in mm (LPS).
	Position [3]float64
}

// Geometry places a voxel grid in patient space. Voxel (i, j, k) sits at
// Origin + i*Spacing[0]*Direction[0] + j*Spacing[1]*Direction[1] + k*Spacing[2]*Direction[2].
type Geometry struct {
	// Cols is the number of voxels along i (DICOM Columns), Rows along j (DICOM Rows),
	// Depth along k (number of slices).
	Cols, Rows, Depth int
	// Spacing in mm along i, j and k. Spacing[0] is the distance between columns
	// (PixelSpacing[1]), Spacing[1] between rows (PixelSpacing[0]), Spacing[2]
	// between slice planes, taken from their positions.
	Spacing [3]float64
	// Origin is the position of voxel (0,0,0): ImagePositionPatient of Slices[0].
	Origin [3]float64
	// Direction holds unit vectors of increasing i (ImageOrientationPatient[0:3]),
	// increasing j (ImageOrientationPatient[3:6]) and increasing k (from the first
	// slice's position towards the last's).
	Direction [3][3]float64
}

// Volume is a series' voxels and geometry.
type Volume struct {
	Geometry
	// Data holds modality values (stored value * RescaleSlope + RescaleIntercept);
	// voxel (i, j, k) is Data[i + Cols*(j + Rows*k)].
	Data []float32
	// Slices[k] is the source instance of voxel plane k, in volume order.
	Slices []Slice
	// Header is the dataset of one source instance with its pixel data dropped,
	// kept for the patient, study and equipment attributes of derived objects.
	Header *dicom.Dataset
	// SeriesInstanceUID, FrameOfReferenceUID and Modality are those of the source series.
	SeriesInstanceUID   string
	FrameOfReferenceUID string
	Modality            string
}

// ErrInvalidSeries is wrapped by every error that rejects the input series or
// one of its instances: malformed or unsupported DICOM, pixel formats this
// package cannot decode, geometry that is not one evenly spaced stack, or a
// volume over Limits. Such errors are permanent (fetching the series again
// gives the same bytes), and their messages are written to be shown to a
// person as the reason a job failed.
var ErrInvalidSeries = fault.New(fault.KindPermanent, "invalid series")
