// Package dicomds builds the DICOM datasets segbridge writes — the SEG
// (dicomseg), the TID 1500 SR (dicomsr) and the burned-in preview series
// (preview): typed elements that remember the first error, sequences whose
// items are in tag order, coded concepts, Decimal Strings that fit, the file
// meta information, and the patient and study modules copied from a source
// instance.
package dicomds

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// ImplementationClassUID identifies segbridge's DICOM writer in the file meta
// information (the one dicomseg writes too). It was derived once from a
// random UUID (PS3.5 B.2), so it needs no organisational root.
const ImplementationClassUID = "2.25.122809706429174746811402831832824106871"

// ImplementationVersionName goes with ImplementationClassUID (SH, at most 16 chars).
const ImplementationVersionName = "SEGBRIDGE_1"

// ExplicitVRLittleEndian is the transfer syntax every writer uses.
const ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"

// Builder makes dataset elements and remembers the first error, so that the
// long lists of elements an IOD needs read as lists rather than as error
// checks. An error here is a programming mistake (an unknown tag, the wrong Go
// type for a VR), or a value the caller did not check.
type Builder struct {
	err error
}

// Err is the first error met, or nil.
func (b *Builder) Err() error { return b.err }

// El returns an element for t holding v ([]string, []int, []byte, or
// [][]*dicom.Element for a sequence).
func (b *Builder) El(t tag.Tag, v any) *dicom.Element {
	e, err := dicom.NewElement(t, v)
	if err != nil && b.err == nil {
		b.err = fmt.Errorf("element %s: %w", tag.DebugString(t), err)
	}
	return e
}

// Str returns a single-valued string element; an empty s gives an empty
// (zero-length) value, which is what a Type 2 attribute without a value needs.
func (b *Builder) Str(t tag.Tag, s string) *dicom.Element {
	if s == "" {
		return b.El(t, []string{})
	}
	return b.El(t, []string{s})
}

// Strs returns a multi-valued string element.
func (b *Builder) Strs(t tag.Tag, s ...string) *dicom.Element {
	if s == nil {
		s = []string{}
	}
	return b.El(t, s)
}

// Ints returns an element of integer values (US, UL, SS, SL, AT); IS values
// go through Str.
func (b *Builder) Ints(t tag.Tag, v ...int) *dicom.Element {
	return b.El(t, v)
}

// DS returns a Decimal String element of vals, each formatted to fit DS's 16
// bytes (FormatDS).
func (b *Builder) DS(t tag.Tag, vals ...float64) *dicom.Element {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = FormatDS(v)
	}
	return b.El(t, s)
}

// Seq returns a sequence element whose items hold the given elements; each
// item's elements are put in tag order, as PS3.5 7.1 requires.
func (b *Builder) Seq(t tag.Tag, items ...[]*dicom.Element) *dicom.Element {
	for _, it := range items {
		Sort(it)
	}
	if items == nil {
		items = [][]*dicom.Element{}
	}
	return b.El(t, items)
}

// Code returns the elements of a Code Sequence Macro item (PS3.3 Table
// 8.8-1). Code values longer than 16 characters go to LongCodeValue and URNs
// to URNCodeValue, as the macro requires.
func (b *Builder) Code(value, scheme, meaning string) []*dicom.Element {
	var v *dicom.Element
	switch {
	case strings.HasPrefix(value, "urn:") || strings.Contains(value, "://"):
		v = b.Str(tag.URNCodeValue, padEven(value))
	case len(value) > 16:
		v = b.Str(tag.LongCodeValue, padEven(value))
	default:
		v = b.Str(tag.CodeValue, value)
	}
	return []*dicom.Element{
		v,
		b.Str(tag.CodingSchemeDesignator, scheme),
		b.Str(tag.CodeMeaning, meaning),
	}
}

// padEven pads s with a trailing space to even length. The library pads UC
// and UR values with NUL, but PS3.5 6.2 wants a space for them.
func padEven(s string) string {
	if len(s)%2 == 1 {
		return s + " "
	}
	return s
}

// FileMeta returns the file meta information (PS3.10 7.1) of an instance of
// sopClass written in Explicit VR Little Endian.
func (b *Builder) FileMeta(sopClass, sopInstance string) []*dicom.Element {
	return []*dicom.Element{
		b.El(tag.FileMetaInformationVersion, []byte{0, 1}),
		b.Str(tag.MediaStorageSOPClassUID, sopClass),
		b.Str(tag.MediaStorageSOPInstanceUID, sopInstance),
		b.Str(tag.TransferSyntaxUID, ExplicitVRLittleEndian),
		b.Str(tag.ImplementationClassUID, ImplementationClassUID),
		b.Str(tag.ImplementationVersionName, ImplementationVersionName),
	}
}

// PatientStudy returns the Patient, General Study and Patient Study
// attributes of header (a source instance), the Type 2 ones empty when the
// source lacks them, and SpecificCharacterSet ISO_IR 192 when a value is not
// ASCII: the library decodes strings to UTF-8 and writes them back as such,
// whatever character set the source used.
func (b *Builder) PatientStudy(header *dicom.Dataset) []*dicom.Element {
	var els []*dicom.Element
	utf8 := false
	for _, c := range []struct {
		t     tag.Tag
		type2 bool
	}{
		{tag.PatientName, true},
		{tag.PatientID, true},
		{tag.IssuerOfPatientID, false},
		{tag.PatientBirthDate, true},
		{tag.PatientSex, true},
		{tag.PatientAge, false},
		{tag.PatientSize, false},
		{tag.PatientWeight, false},
		{tag.StudyInstanceUID, true},
		{tag.StudyDate, true},
		{tag.StudyTime, true},
		{tag.ReferringPhysicianName, true},
		{tag.StudyID, true},
		{tag.AccessionNumber, true},
		{tag.StudyDescription, false},
	} {
		vals, ok := HeaderStrings(header, c.t)
		if !ok && !c.type2 {
			continue
		}
		for _, s := range vals {
			utf8 = utf8 || !isASCII(s)
		}
		els = append(els, b.El(c.t, vals))
	}
	if utf8 {
		els = append(els, b.Str(tag.SpecificCharacterSet, "ISO_IR 192"))
	}
	return els
}

// Write sorts els into tag order and writes them as a Part 10 file; els must
// include the file meta information (FileMeta). It returns the builder's
// first error if there was one.
func (b *Builder) Write(els []*dicom.Element) ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	Sort(els)
	var buf bytes.Buffer
	if err := dicom.Write(&buf, dicom.Dataset{Elements: els}); err != nil {
		return nil, fmt.Errorf("write dataset: %w", err)
	}
	return buf.Bytes(), nil
}

// Sort orders elements by tag, the order PS3.5 7.1 requires within a
// dataset and the library writes them in.
func Sort(es []*dicom.Element) {
	slices.SortStableFunc(es, func(a, b *dicom.Element) int {
		if a.Tag.Group != b.Tag.Group {
			return int(a.Tag.Group) - int(b.Tag.Group)
		}
		return int(a.Tag.Element) - int(b.Tag.Element)
	})
}

// FormatDS formats v as a Decimal String of at most 16 characters, in the
// shortest form that reads back as exactly v when one fits, so that values
// read from a DS are written back unchanged.
func FormatDS(v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 64)
	for prec := 16; len(s) > 16 && prec > 0; prec-- {
		s = strconv.FormatFloat(v, 'g', prec, 64)
	}
	return s
}

// HeaderStrings returns the string values of t in h and whether h has t,
// with the padding some parsers leave trimmed.
func HeaderStrings(h *dicom.Dataset, t tag.Tag) ([]string, bool) {
	if h == nil {
		return []string{}, false
	}
	el, err := h.FindElementByTag(t)
	if err != nil || el.Value == nil {
		return []string{}, false
	}
	s, ok := el.Value.GetValue().([]string)
	if !ok {
		return []string{}, false
	}
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strings.TrimRight(x, " \x00")
	}
	if len(out) == 1 && out[0] == "" {
		out = []string{}
	}
	return out, true
}

// HeaderString returns the first value of t in h, or "".
func HeaderString(h *dicom.Dataset, t tag.Tag) string {
	s, _ := HeaderStrings(h, t)
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// CheckLO checks that s fits a single-valued LO (or one PN component group):
// at most 64 characters, no backslash (the value separator) and no control
// characters.
func CheckLO(s string) error {
	if n := len([]rune(s)); n > 64 {
		return fmt.Errorf("%d characters, at most 64 allowed", n)
	}
	for _, r := range s {
		if r == '\\' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q: backslash or control character", s)
		}
	}
	return nil
}

// TruncateLO shortens s to the 64 characters an LO holds and replaces what
// an LO may not hold (backslashes, control characters) with spaces, for
// values made from text a person or a manifest wrote.
func TruncateLO(s string) string {
	r := []rune(s)
	for i, c := range r {
		if c == '\\' || c < 0x20 || c == 0x7f {
			r[i] = ' '
		}
	}
	if len(r) > 64 {
		r = r[:64]
	}
	return string(r)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
