package volume

import (
	"errors"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// hugeULSynth is slice k of the reported series: Rows and Columns written
// with VR UL as 2147483648, BitsAllocated 32 and an empty PixelData, so that
// Rows·Columns·4 is 2^64 and wraps to 0 in 64-bit arithmetic.
func hugeULSynth(k int) synth {
	s := axialSynth(k)
	s.rows, s.cols, s.bits = 1<<31, 1<<31, 32
	s.raw = []byte{}
	s.vr = map[tag.Tag]string{tag.Rows: "UL", tag.Columns: "UL"}
	return s
}

// TestAssemble_ReportedOverflow replays the report: four such instances
// went through ParseInstance and Assemble, the size arithmetic wrapped to 0,
// the limits passed and a decoding goroutine sliced out of range, which
// ended the whole process. They must be refused with a reason instead.
func TestAssemble_ReportedOverflow(t *testing.T) {
	var insts []*Instance
	for k := range 4 {
		in, err := ParseInstance(hugeULSynth(k).encode(t))
		if err != nil {
			if !errors.Is(err, ErrInvalidSeries) {
				t.Fatalf("ParseInstance error %q does not wrap ErrInvalidSeries", err)
			}
			if !strings.Contains(err.Error(), "Rows 2147483648") {
				t.Errorf("ParseInstance error = %q, want it to name Rows 2147483648", err)
			}
			t.Logf("refused: %v", err)
			continue
		}
		insts = append(insts, in)
	}
	if len(insts) == 0 {
		return
	}
	v, err := Assemble(insts, Limits{})
	if err == nil {
		t.Fatalf("Assemble accepted a %dx%dx%d volume with %d values", v.Cols, v.Rows, v.Depth, len(v.Data))
	}
	if !errors.Is(err, ErrInvalidSeries) {
		t.Fatalf("Assemble error %q does not wrap ErrInvalidSeries", err)
	}
}

// TestParseInstance_SizeBounds checks that every attribute a size is made of
// is bounded by what it may hold, whatever VR it was written with.
func TestParseInstance_SizeBounds(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(s *synth)
		wantErr string
	}{
		{
			name: "Columns UL 2^31, 8 bits",
			modify: func(s *synth) {
				s.cols, s.bits, s.raw = 1<<31, 8, []byte{}
				s.vr = map[tag.Tag]string{tag.Columns: "UL"}
			},
			wantErr: "Columns 2147483648 is larger than 65535",
		},
		{
			name: "Rows UL 65536",
			modify: func(s *synth) {
				s.rows, s.raw = 65536, []byte{}
				s.vr = map[tag.Tag]string{tag.Rows: "UL"}
			},
			wantErr: "Rows 65536 is larger than 65535",
		},
		{
			name: "Rows as an IS string",
			modify: func(s *synth) {
				s.raw = []byte{}
				s.set = map[tag.Tag]any{tag.Rows: []string{"4294967296"}}
				s.vr = map[tag.Tag]string{tag.Rows: "IS"}
			},
			wantErr: "Rows 4294967296 is larger than 65535",
		},
		{
			name: "Rows SL negative",
			modify: func(s *synth) {
				s.rows, s.raw = -3, []byte{}
				s.vr = map[tag.Tag]string{tag.Rows: "SL"}
			},
			wantErr: "image size 4x-3 is empty",
		},
		{
			name: "NumberOfFrames beyond IS",
			modify: func(s *synth) {
				s.sopClass, s.frames, s.raw = "1.2.840.10008.5.1.4.1.1.4.1", "99999999999", []byte{}
			},
			wantErr: "NumberOfFrames 99999999999 is larger than 2147483647",
		},
		{
			// 65535x65535 pixels of 32 bits in 2^31-1 frames are 2^65 bytes:
			// the product must be refused, not wrapped.
			name: "frames times plane overflows",
			modify: func(s *synth) {
				s.rows, s.cols, s.bits, s.raw = 65535, 65535, 32, []byte{}
				s.vr = map[tag.Tag]string{tag.Rows: "UL", tag.Columns: "UL"}
				s.set = map[tag.Tag]any{tag.PerFrameFunctionalGroupsSequence: [][]*dicom.Element{}}
				s.sopClass, s.frames = "1.2.840.10008.5.1.4.1.1.4.1", "2147483647"
			},
			wantErr: "2147483647 frames of 65535x65535 pixels of 32 bits are more bytes than can be addressed",
		},
		{
			name: "large but addressable frames refused by length",
			modify: func(s *synth) {
				s.rows, s.cols, s.raw = 65535, 65535, []byte{}
				s.set = map[tag.Tag]any{tag.PerFrameFunctionalGroupsSequence: [][]*dicom.Element{}}
				s.sopClass, s.frames = "1.2.840.10008.5.1.4.1.1.4.1", "1000"
			},
			wantErr: "pixel data holds 0 bytes, 1000 frames of 65535x65535 pixels of 16 bits need 8589672450000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := axialSynth(0)
			tt.modify(&s)
			in, err := ParseInstance(s.encode(t))
			if err == nil {
				t.Fatalf("ParseInstance accepted %dx%d with %d frames", in.Cols, in.Rows, len(in.Frames))
			}
			if !errors.Is(err, ErrInvalidSeries) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseInstance error = %q, want ErrInvalidSeries containing %q", err, tt.wantErr)
			}
			t.Logf("message: %v", err)
		})
	}
}
