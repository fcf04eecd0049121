package volume

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"
)

var le, be = binary.LittleEndian, binary.BigEndian

func TestParseInstance_PixelFormats(t *testing.T) {
	tests := []struct {
		name   string
		modify func(s *synth)
		want   []float32
	}{
		{
			name: "8-bit unsigned",
			modify: func(s *synth) {
				s.bits = 8
				s.raw = []byte{0, 1, 2, 127, 128, 200, 254, 255, 3, 4, 5, 6}
			},
			want: []float32{0, 1, 2, 127, 128, 200, 254, 255, 3, 4, 5, 6},
		},
		{
			name: "8-bit signed",
			modify: func(s *synth) {
				s.bits, s.pixRep = 8, 1
				s.raw = []byte{0, 1, 0x7f, 0x80, 0xff, 0xfe, 2, 3, 4, 5, 6, 7}
			},
			want: []float32{0, 1, 127, -128, -1, -2, 2, 3, 4, 5, 6, 7},
		},
		{
			name: "8-bit odd size padded",
			modify: func(s *synth) {
				s.bits, s.rows, s.cols = 8, 1, 3
				s.raw = []byte{9, 8, 7}
			},
			want: []float32{9, 8, 7},
		},
		{
			name: "16-bit unsigned",
			modify: func(s *synth) {
				s.raw = u16(le, 0, 1, 1000, 32767, 32768, 65535, 7, 8, 9, 10, 11, 12)
			},
			want: []float32{0, 1, 1000, 32767, 32768, 65535, 7, 8, 9, 10, 11, 12},
		},
		{
			name: "16-bit signed",
			modify: func(s *synth) {
				s.pixRep = 1
				s.raw = u16(le, 0, 1, 0xffff, 0x8000, 0x7fff, 0xfc18, 7, 8, 9, 10, 11, 12)
			},
			want: []float32{0, 1, -1, -32768, 32767, -1000, 7, 8, 9, 10, 11, 12},
		},
		{
			name: "12 of 16 bits unsigned, garbage above HighBit",
			modify: func(s *synth) {
				s.bitsStored = 12
				s.raw = u16(le, 0xf000, 0x1fff, 0xa123, 4095, 0, 1, 2, 3, 4, 5, 6, 7)
			},
			want: []float32{0, 4095, 0x123, 4095, 0, 1, 2, 3, 4, 5, 6, 7},
		},
		{
			name: "12 of 16 bits signed, sign extended from bit 11",
			modify: func(s *synth) {
				s.bitsStored, s.pixRep = 12, 1
				s.raw = u16(le, 0x0800, 0x0fff, 0x07ff, 0xf001, 0xffff, 1, 2, 3, 4, 5, 6, 7)
			},
			want: []float32{-2048, -1, 2047, 1, -1, 1, 2, 3, 4, 5, 6, 7},
		},
		{
			name: "12 bits stored with HighBit 15",
			modify: func(s *synth) {
				s.bitsStored, s.highBit = 12, 15
				s.raw = u16(le, 0x0010, 0xfff0, 0x0025, 0, 0, 0, 0, 0, 0, 0, 0, 0x001f)
			},
			want: []float32{1, 4095, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1},
		},
		{
			name: "rescale slope and intercept",
			modify: func(s *synth) {
				s.slope, s.intercept = "0.5", "-100"
				s.raw = u16(le, 0, 1, 2, 200, 400, 1000, 0, 0, 0, 0, 0, 3)
			},
			want: []float32{-100, -99.5, -99, 0, 100, 400, -100, -100, -100, -100, -100, -98.5},
		},
		{
			name: "signed with rescale",
			modify: func(s *synth) {
				s.pixRep, s.slope, s.intercept = 1, "2", "-1024"
				s.raw = u16(le, 0xffff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
			},
			want: []float32{-1026, -1024, -1022, -1024, -1024, -1024, -1024, -1024, -1024, -1024, -1024, -1024},
		},
		{
			name: "implicit VR little endian",
			modify: func(s *synth) {
				s.ts = tsImplicitLE
				s.raw = u16(le, 5, 4, 3, 2, 1, 0, 65535, 1, 2, 3, 4, 5)
			},
			want: []float32{5, 4, 3, 2, 1, 0, 65535, 1, 2, 3, 4, 5},
		},
		{
			name: "explicit VR big endian",
			modify: func(s *synth) {
				s.ts = tsExplicitBE
				s.raw = u16(be, 5, 4, 3, 2, 1, 0, 65535, 1, 2, 3, 4, 258)
			},
			want: []float32{5, 4, 3, 2, 1, 0, 65535, 1, 2, 3, 4, 258},
		},
		{
			name: "32-bit signed",
			modify: func(s *synth) {
				s.bits, s.pixRep = 32, 1
				s.raw = u32(le, 0xffffffff, 100000, 0x80000000, 0, 0, 0, 0, 0, 0, 0, 0, 7)
			},
			want: []float32{-1, 100000, -2147483648, 0, 0, 0, 0, 0, 0, 0, 0, 7},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := axialSynth(0)
			tt.modify(&s)
			in := s.parse(t)
			if got := in.Pixels(); !slices.Equal(got, tt.want) {
				t.Errorf("Pixels() = %v, want %v", got, tt.want)
			}
			// Assemble decodes through a lookup table for 8 and 16 bits.
			got := make([]float32, len(tt.want))
			in.decodeInto(got, &lutCache{})
			if !slices.Equal(got, tt.want) {
				t.Errorf("decodeInto with table = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseInstance_Attributes(t *testing.T) {
	s := axialSynth(3)
	s.iop = [6]float64{0, 1, 0, 0, 0, -1}
	s.slope, s.intercept = "2", "-3"
	in := s.parse(t)
	if in.SOPInstanceUID != s.sop || in.SOPClassUID != mrImageStorage || in.SeriesInstanceUID != testSeriesUID ||
		in.FrameOfReferenceUID != testFrameUID || in.Modality != "MR" || in.InstanceNumber != 4 {
		t.Errorf("identifiers = %q %q %q %q %q %d", in.SOPInstanceUID, in.SOPClassUID, in.SeriesInstanceUID,
			in.FrameOfReferenceUID, in.Modality, in.InstanceNumber)
	}
	if in.Rows != 3 || in.Cols != 4 || in.PixelSpacing != [2]float64{0.5, 0.75} || in.Position != s.pos {
		t.Errorf("geometry = %dx%d %v %v", in.Cols, in.Rows, in.PixelSpacing, in.Position)
	}
	if in.Orientation != [2][3]float64{{0, 1, 0}, {0, 0, -1}} || in.Normal() != [3]float64{-1, 0, 0} {
		t.Errorf("orientation = %v, normal %v", in.Orientation, in.Normal())
	}
	if in.RescaleSlope != 2 || in.RescaleIntercept != -3 || in.SliceThickness != 2 {
		t.Errorf("rescale %g %g, thickness %g", in.RescaleSlope, in.RescaleIntercept, in.SliceThickness)
	}
	if _, err := in.Header.FindElementByTag(tag.PixelData); err == nil {
		t.Error("Header still holds PixelData")
	}
	if _, err := in.Header.FindElementByTag(tag.PatientID); err != nil {
		t.Errorf("Header lost PatientID: %v", err)
	}
}

func TestParseInstance_Rejections(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(s *synth)
		data    func(t *testing.T) []byte // overrides modify when set
		wantErr string
	}{
		{
			name:    "not DICOM",
			data:    func(t *testing.T) []byte { return []byte("hello, not a DICOM file") },
			wantErr: "not a DICOM Part-10 file",
		},
		{
			name:    "non-image object",
			modify:  func(s *synth) { s.sopClass, s.noPixels = "1.2.840.10008.5.1.4.1.1.88.11", true },
			wantErr: "not an image: SOP class 1.2.840.10008.5.1.4.1.1.88.11 (Basic Text SR",
		},
		{
			name:    "JPEG 2000 with native pixel data",
			modify:  func(s *synth) { s.ts = "1.2.840.10008.1.2.4.90" },
			wantErr: "pixel data is not encapsulated although transfer syntax JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90) is",
		},
		{
			name:    "JPEG lossless pixel data not encapsulated",
			modify:  func(s *synth) { s.ts = "1.2.840.10008.1.2.4.70" },
			wantErr: "pixel data is not encapsulated although transfer syntax JPEG Lossless",
		},
		{
			name:    "a syntax nobody here decodes",
			modify:  func(s *synth) { s.ts = "1.2.840.10008.1.2.4.100" },
			wantErr: "series is stored with transfer syntax 1.2.840.10008.1.2.4.100 (MPEG2 Main Profile / Main Level), which segbridge cannot decode",
		},
		{
			name: "an unknown syntax",
			data: func(t *testing.T) []byte {
				// The writer refuses unknown UIDs; write one of the
				// same length and rename it.
				s := axialSynth(0)
				s.ts = "1.2.840.10008.1.2.4.50"
				return bytes.Replace(s.encode(t), []byte(s.ts), []byte("1.2.826.0.1.3680043.99"), 1)
			},
			wantErr: "transfer syntax 1.2.826.0.1.3680043.99 (unknown transfer syntax), which segbridge cannot decode",
		},
		{
			name:    "JPEG-LS whose pixel data is not encapsulated",
			modify:  func(s *synth) { s.ts = "1.2.840.10008.1.2.4.80" },
			wantErr: "pixel data is not encapsulated although transfer syntax JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80) is",
		},
		{
			name: "deflated but not deflate",
			data: func(t *testing.T) []byte {
				// The writer refuses deflate; write JPEG Baseline (a UID
				// of the same length) and rename it.
				s := axialSynth(0)
				s.ts = "1.2.840.10008.1.2.4.50"
				return bytes.Replace(s.encode(t), []byte(s.ts), []byte(tsDeflatedLE), 1)
			},
			wantErr: "malformed DICOM file: deflated dataset: flate: corrupt input",
		},
		{
			name:    "multi-frame",
			modify:  func(s *synth) { s.frames = "2" },
			wantErr: "multi-frame image without per-frame functional groups (NumberOfFrames 2, SOP class MR Image Storage) is not supported",
		},
		{
			name:    "enhanced MR without functional groups",
			modify:  func(s *synth) { s.sopClass, s.frames = "1.2.840.10008.5.1.4.1.1.4.1", "3" },
			wantErr: "(NumberOfFrames 3, SOP class Enhanced MR Image Storage) is not supported",
		},
		{
			name:    "MONOCHROME1",
			modify:  func(s *synth) { s.photometric = "MONOCHROME1" },
			wantErr: "MONOCHROME1 (inverted grey scale) is not supported",
		},
		{
			name:    "RGB",
			modify:  func(s *synth) { s.photometric, s.samples = "RGB", 3 },
			wantErr: "SamplesPerPixel is 3: colour images are not supported",
		},
		{
			name:    "1-bit",
			modify:  func(s *synth) { s.bits = 1 },
			wantErr: "BitsAllocated 1 is not supported",
		},
		{
			name:    "short pixel data",
			modify:  func(s *synth) { s.raw = make([]byte, 10) },
			wantErr: "pixel data holds 10 bytes, 4x3 pixels of 16 bits need 24",
		},
		{
			name:    "no position",
			modify:  func(s *synth) { s.drop = []tag.Tag{tag.ImagePositionPatient} },
			wantErr: "ImagePositionPatient is missing",
		},
		{
			name:    "no pixel spacing",
			modify:  func(s *synth) { s.drop = []tag.Tag{tag.PixelSpacing} },
			wantErr: "PixelSpacing is missing",
		},
		{
			name:    "orientation not orthogonal",
			modify:  func(s *synth) { s.iop = [6]float64{1, 0, 0, 0.5, 0.866, 0} },
			wantErr: "is not two orthogonal unit vectors",
		},
		{
			name:    "zero slope",
			modify:  func(s *synth) { s.slope = "0" },
			wantErr: "RescaleSlope is 0",
		},
		{
			name: "value length past end of file",
			data: func(t *testing.T) []byte {
				b := axialSynth(0).encode(t)
				// Claim a 4 GiB PixelData: the pre-scan must refuse it
				// before the parser allocates that much.
				i := len(b) - 24 - 4
				le.PutUint32(b[i:], 0xfffffff0)
				return b
			},
			wantErr: "malformed DICOM file: dataset at byte",
		},
		{
			name: "truncated",
			data: func(t *testing.T) []byte {
				b := axialSynth(0).encode(t)
				return b[:len(b)-7]
			},
			wantErr: "runs past the end of its container",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var data []byte
			if tt.data != nil {
				data = tt.data(t)
			} else {
				s := axialSynth(0)
				tt.modify(&s)
				data = s.encode(t)
			}
			in, err := ParseInstance(data)
			if err == nil {
				t.Fatalf("ParseInstance = %+v, want error containing %q", in, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidSeries) {
				t.Errorf("error %q does not wrap ErrInvalidSeries", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			t.Logf("message: %v", err)
		})
	}
}
