package volume

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

const (
	mrImageStorage = "1.2.840.10008.5.1.4.1.1.4"
	testSeriesUID  = "1.2.826.0.1.3680043.8.498.100"
	testFrameUID   = "1.2.826.0.1.3680043.8.498.101"
)

// synth describes a small synthetic image instance for unit tests.
type synth struct {
	ts             string
	sopClass       string
	sop            string
	series         string
	frame          string
	rows, cols     int
	bits           int
	bitsStored     int // 0: same as bits
	highBit        int // -1: bitsStored-1
	pixRep         int
	photometric    string
	samples        int
	pos            [3]float64
	iop            [6]float64
	spacing        [2]float64
	slope          string // "" leaves RescaleSlope out
	intercept      string // "" leaves RescaleIntercept out
	instanceNumber int
	frames         string // NumberOfFrames, "" leaves it out
	raw            []byte // pixel bytes as stored; nil: zeros; noPixels drops the element
	noPixels       bool
	drop           []tag.Tag
	// set replaces or adds attribute values ([]int, []string), and vr the VR
	// an attribute is written with (UL or IS for Rows, say), as writers that
	// ignore the data dictionary do.
	set map[tag.Tag]any
	vr  map[tag.Tag]string
}

// axialSynth returns a 4x3 16-bit unsigned axial slice k of a stack with 2 mm gaps.
func axialSynth(k int) synth {
	return synth{
		ts:             tsExplicitLE,
		sopClass:       mrImageStorage,
		sop:            fmt.Sprintf("1.2.826.0.1.3680043.8.498.200.%d", k),
		series:         testSeriesUID,
		frame:          testFrameUID,
		rows:           3,
		cols:           4,
		bits:           16,
		highBit:        -1,
		photometric:    "MONOCHROME2",
		samples:        1,
		pos:            [3]float64{-10, -20, 30 + 2*float64(k)},
		iop:            [6]float64{1, 0, 0, 0, 1, 0},
		spacing:        [2]float64{0.5, 0.75},
		instanceNumber: k + 1,
	}
}

func dsStrings(vals ...float64) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return out
}

// encode writes s as a Part-10 file.
func (s synth) encode(t testing.TB) []byte {
	t.Helper()
	b, err := s.write()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// write writes s as a Part-10 file, or says why the writer refused it.
func (s synth) write() ([]byte, error) {
	bitsStored := s.bitsStored
	if bitsStored == 0 {
		bitsStored = s.bits
	}
	highBit := s.highBit
	if highBit < 0 {
		highBit = bitsStored - 1
	}
	raw := s.raw
	if raw == nil {
		raw = make([]byte, s.rows*s.cols*s.bits/8)
	}
	if len(raw)%2 == 1 {
		raw = append(slices.Clone(raw), 0)
	}
	vals := map[tag.Tag]any{
		tag.MediaStorageSOPClassUID:    []string{s.sopClass},
		tag.MediaStorageSOPInstanceUID: []string{s.sop},
		tag.TransferSyntaxUID:          []string{s.ts},
		tag.SOPClassUID:                []string{s.sopClass},
		tag.SOPInstanceUID:             []string{s.sop},
		tag.Modality:                   []string{"MR"},
		tag.PatientID:                  []string{"SYNTH"},
		tag.StudyInstanceUID:           []string{"1.2.826.0.1.3680043.8.498.99"},
		tag.SeriesInstanceUID:          []string{s.series},
		tag.FrameOfReferenceUID:        []string{s.frame},
		tag.InstanceNumber:             []string{strconv.Itoa(s.instanceNumber)},
		tag.ImagePositionPatient:       dsStrings(s.pos[:]...),
		tag.ImageOrientationPatient:    dsStrings(s.iop[:]...),
		tag.PixelSpacing:               dsStrings(s.spacing[:]...),
		tag.SliceThickness:             []string{"2"},
		tag.SamplesPerPixel:            []int{s.samples},
		tag.PhotometricInterpretation:  []string{s.photometric},
		tag.Rows:                       []int{s.rows},
		tag.Columns:                    []int{s.cols},
		tag.BitsAllocated:              []int{s.bits},
		tag.BitsStored:                 []int{bitsStored},
		tag.HighBit:                    []int{highBit},
		tag.PixelRepresentation:        []int{s.pixRep},
	}
	if s.slope != "" {
		vals[tag.RescaleSlope] = []string{s.slope}
	}
	if s.intercept != "" {
		vals[tag.RescaleIntercept] = []string{s.intercept}
	}
	if s.frames != "" {
		vals[tag.NumberOfFrames] = []string{s.frames}
	}
	if !s.noPixels {
		vals[tag.PixelData] = dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: raw}
	}
	for tg, v := range s.set {
		vals[tg] = v
	}
	for _, d := range s.drop {
		delete(vals, d)
	}
	var d dicom.Dataset
	for tg, v := range vals {
		e, err := dicom.NewElement(tg, v)
		if err != nil {
			return nil, fmt.Errorf("new element %v: %w", tg, err)
		}
		if tg == tag.PixelData && s.bits == 8 && s.ts != tsImplicitLE {
			e.RawValueRepresentation = "OB"
		}
		if vr, ok := s.vr[tg]; ok {
			e.RawValueRepresentation = vr
		}
		d.Elements = append(d.Elements, e)
	}
	slices.SortFunc(d.Elements, func(a, b *dicom.Element) int { return a.Tag.Compare(b.Tag) })
	var buf bytes.Buffer
	if err := dicom.Write(&buf, d, dicom.SkipVRVerification()); err != nil {
		return nil, fmt.Errorf("write synthetic instance: %w", err)
	}
	return buf.Bytes(), nil
}

// parse encodes and parses s, failing the test on error.
func (s synth) parse(t testing.TB) *Instance {
	t.Helper()
	in, err := ParseInstance(s.encode(t))
	if err != nil {
		t.Fatalf("ParseInstance: %v", err)
	}
	return in
}

func u16(bo binary.ByteOrder, vals ...uint16) []byte {
	out := make([]byte, 2*len(vals))
	for i, v := range vals {
		bo.PutUint16(out[2*i:], v)
	}
	return out
}

func u32(bo binary.ByteOrder, vals ...uint32) []byte {
	out := make([]byte, 4*len(vals))
	for i, v := range vals {
		bo.PutUint32(out[4*i:], v)
	}
	return out
}
