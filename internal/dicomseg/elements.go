package dicomseg

import (
	"github.com/suyashkumar/dicom"

	"github.com/segbridge/segbridge/internal/dicomds"
)

// codeItem returns the elements of a Code Sequence Macro item for c (PS3.3
// Table 8.8-1), built by the dataset builder every writer shares.
func codeItem(b *dicomds.Builder, c Code) []*dicom.Element {
	return b.Code(c.Value, c.Scheme, c.Meaning)
}
