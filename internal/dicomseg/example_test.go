package dicomseg_test

import (
	"fmt"
	"log"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/volume"
)

func ExampleEncode() {
	// A 4x3x2 axial volume; in segbridge it comes from the volume package.
	study, _ := dicom.NewElement(tag.StudyInstanceUID, []string{"1.2.3.4"})
	v := &volume.Volume{
		Geometry: volume.Geometry{
			Cols: 4, Rows: 3, Depth: 2,
			Spacing:   [3]float64{0.5, 0.5, 3},
			Direction: [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}},
		},
		Slices: []volume.Slice{
			{SOPInstanceUID: "1.2.3.4.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.4", Position: [3]float64{0, 0, 0}},
			{SOPInstanceUID: "1.2.3.4.2", SOPClassUID: "1.2.840.10008.5.1.4.1.1.4", Position: [3]float64{0, 0, 3}},
		},
		Header:              &dicom.Dataset{Elements: []*dicom.Element{study}},
		SeriesInstanceUID:   "1.2.3.4.5",
		FrameOfReferenceUID: "1.2.3.4.6",
	}
	labels := make([]uint8, 4*3*2)
	labels[5] = 1 // one voxel of segment 1 on slice 0; segment 2 is empty
	segs := []dicomseg.Segment{
		{Label: 1, Name: "Tumour", Category: dicomseg.Code{Value: "49755003", Scheme: "SCT", Meaning: "Morphologically Altered Structure"},
			Type: dicomseg.Code{Value: "108369006", Scheme: "SCT", Meaning: "Neoplasm"}, RGB: [3]uint8{255, 0, 0}},
		{Label: 2, Name: "Oedema", Category: dicomseg.Code{Value: "49755003", Scheme: "SCT", Meaning: "Morphologically Altered Structure"},
			Type: dicomseg.Code{Value: "79654002", Scheme: "SCT", Meaning: "Edema"}, RGB: [3]uint8{0, 0, 255}},
	}
	res, err := dicomseg.Encode(v, labels, segs, dicomseg.Options{AlgorithmName: "brain-unet", AlgorithmVersion: "1.0"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("frames:", res.Frames, "segments:", res.Segments)
	// Output: frames: 2 segments: [1 2]
}
