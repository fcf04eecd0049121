package dicomds

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func TestFormatDS_Fits(t *testing.T) {
	for _, v := range []float64{0, 1, -1.5, 0.1 + 0.2, 1e-20, -123456789.123456789, 1.0 / 3} {
		if s := FormatDS(v); len(s) > 16 {
			t.Errorf("FormatDS(%v) = %q, longer than 16", v, s)
		}
	}
	if s := FormatDS(4327.496); s != "4327.496" {
		t.Errorf("FormatDS(4327.496) = %q, want it exact", s)
	}
}

func TestFormatDS_Values(t *testing.T) {
	tests := []struct {
		name  string
		v     float64
		want  string
		exact bool
	}{
		{"Integer", 5, "5", true},
		{"Short", -120.5, "-120.5", true},
		{"SixDecimals", -101.123456, "-101.123456", true},
		{"SixteenChars", -123.45678901234, "-123.45678901234", true},
		{"TooLong", 0.7071067811865476, "0.70710678118655", false},
		{"TooLongNegative", -0.7071067811865476, "-0.7071067811865", false},
		{"Tiny", 6.123233995736766e-17, "6.1232339957e-17", false},
		{"Zero", 0, "0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FormatDS(tt.v)
			if got != tt.want {
				t.Errorf("FormatDS(%v) = %q, want %q", tt.v, got, tt.want)
			}
			if len(got) > 16 {
				t.Errorf("FormatDS(%v) = %q: longer than 16", tt.v, got)
			}
			back, err := strconv.ParseFloat(got, 64)
			if err != nil {
				t.Fatal(err)
			}
			if tt.exact && back != tt.v {
				t.Errorf("FormatDS(%v) = %q reads back as %v", tt.v, got, back)
			}
		})
	}
}

func TestBuilder_Code(t *testing.T) {
	b := &Builder{}
	for _, tc := range []struct {
		value string
		want  tag.Tag
	}{
		{"12738006", tag.CodeValue},
		{"a-code-value-longer-than-sixteen", tag.LongCodeValue},
		{"urn:oid:1.2.3", tag.URNCodeValue},
	} {
		els := b.Code(tc.value, "SCT", "Brain")
		if els[0].Tag != tc.want {
			t.Errorf("code %q written as %v", tc.value, els[0].Tag)
		}
	}
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
}

func TestBuilder_PatientStudyAndWrite(t *testing.T) {
	name, _ := dicom.NewElement(tag.PatientName, []string{"Müller^Anna"})
	study, _ := dicom.NewElement(tag.StudyInstanceUID, []string{"1.2.3"})
	h := &dicom.Dataset{Elements: []*dicom.Element{name, study}}
	b := &Builder{}
	els := append(b.FileMeta("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"), b.PatientStudy(h)...)
	els = append(els, b.Str(tag.SOPInstanceUID, "1.2.3.4"), b.Str(tag.SOPClassUID, "1.2.840.10008.5.1.4.1.1.7"))
	data, err := b.Write(els)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := dicom.Parse(bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := HeaderString(&ds, tag.PatientName); got != "Müller^Anna" {
		t.Errorf("PatientName %q", got)
	}
	if got := HeaderString(&ds, tag.SpecificCharacterSet); got != "ISO_IR 192" {
		t.Errorf("SpecificCharacterSet %q, want ISO_IR 192 for a non-ASCII name", got)
	}
	// Type 2 attributes the source lacks are present and empty; Type 3 ones absent.
	if _, ok := HeaderStrings(&ds, tag.AccessionNumber); !ok {
		t.Error("AccessionNumber (Type 2) missing")
	}
	if _, ok := HeaderStrings(&ds, tag.PatientAge); ok {
		t.Error("PatientAge (Type 3) written without a value in the source")
	}
}

func TestTruncateLO(t *testing.T) {
	got := TruncateLO("a\\b\nc" + strings.Repeat("x", 100))
	if CheckLO(got) != nil || len([]rune(got)) != 64 || !strings.HasPrefix(got, "a b c") {
		t.Errorf("TruncateLO = %q", got)
	}
}
