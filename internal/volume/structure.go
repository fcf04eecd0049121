package volume

import (
	"fmt"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// CheckStructure validates the Part-10 framing and every element length of
// data, as ParseInstance does before the DICOM library sees a file, and
// returns the file's transfer syntax UID. Readers of other DICOM objects from
// outside (a SEG read back from Orthanc) call it first, so that a length field
// that runs past the end of the data cannot make the library allocate or loop
// on it.
func CheckStructure(data []byte) (transferSyntax string, err error) {
	scan, err := checkStructure(data)
	return scan.ts, err
}

// FileInfo is what tells a DICOM file's series apart, read from its header
// without decoding pixels.
type FileInfo struct {
	SOPClassUID       string
	SOPInstanceUID    string
	SeriesInstanceUID string
	SeriesNumber      int
	SeriesDescription string
	Modality          string
	// Image is true when the file has pixel data.
	Image bool
}

// ReadFileInfo reads the identity of the Part-10 file data from its header,
// with the same structure checks as ParseInstance and no pixel decoding: a
// caller handed a folder (a CD export: DICOMDIR, several series, reports)
// sorts the files with it before parsing the ones it wants.
func ReadFileInfo(data []byte) (fi FileInfo, err error) {
	defer func() {
		if r := recover(); r != nil {
			fi, err = FileInfo{}, fmt.Errorf("%w: malformed DICOM file: parser failed: %v", ErrInvalidSeries, r)
		}
	}()
	ds, scan, _, err := readDataset(data, DefaultMaxBytes)
	if err != nil {
		return FileInfo{}, err
	}
	fi.SOPClassUID, _ = optionalString(&ds, tag.SOPClassUID)
	if fi.SOPClassUID == "" {
		fi.SOPClassUID, _ = optionalString(&ds, tag.MediaStorageSOPClassUID)
	}
	fi.SOPInstanceUID, _ = optionalString(&ds, tag.SOPInstanceUID)
	fi.SeriesInstanceUID, _ = optionalString(&ds, tag.SeriesInstanceUID)
	fi.SeriesDescription, _ = optionalString(&ds, tag.SeriesDescription)
	fi.Modality, _ = optionalString(&ds, tag.Modality)
	if n, ok, err := optionalInt(&ds, tag.SeriesNumber); err == nil && ok {
		fi.SeriesNumber = n
	}
	fi.Image = scan.pixel.found
	return fi, nil
}

// SOPClassName returns the name of a SOP class UID ("MR Image Storage"), or
// "unknown SOP class".
func SOPClassName(sopClass string) string { return sopClassName(sopClass) }
