package dicomseg

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// builder makes dataset elements and remembers the first error, so that the
// long lists of elements a SEG needs read as lists rather than as error checks.
// Errors here mean a programming mistake (unknown tag, wrong Go type for a VR).
type builder struct {
	err error
}

// el returns an element for t holding v ([]string, []int, []float64, []byte).
func (b *builder) el(t tag.Tag, v any) *dicom.Element {
	e, err := dicom.NewElement(t, v)
	if err != nil && b.err == nil {
		b.err = fmt.Errorf("element %s: %w", tag.DebugString(t), err)
	}
	return e
}

// str returns a single-valued string element; an empty s gives an empty
// (zero-length) value, which is what a Type 2 attribute without a value needs.
func (b *builder) str(t tag.Tag, s string) *dicom.Element {
	if s == "" {
		return b.el(t, []string{})
	}
	return b.el(t, []string{s})
}

// ints returns an element of integer values (US, UL, AT).
func (b *builder) ints(t tag.Tag, v ...int) *dicom.Element {
	return b.el(t, v)
}

// ds returns a DS element of vals formatted to fit the 16 bytes of a DS value.
func (b *builder) ds(t tag.Tag, vals ...float64) *dicom.Element {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = formatDS(v)
	}
	return b.el(t, s)
}

// seq returns a sequence element whose items hold the given elements; each
// item's elements are put in tag order as PS3.5 7.1 requires.
func (b *builder) seq(t tag.Tag, items ...[]*dicom.Element) *dicom.Element {
	for _, it := range items {
		sortElements(it)
	}
	if items == nil {
		items = [][]*dicom.Element{}
	}
	return b.el(t, items)
}

// code returns the elements of a Code Sequence Macro item (PS3.3 Table 8.8-1).
// Code values longer than 16 characters go to LongCodeValue and URNs to
// URNCodeValue, as the macro requires.
func (b *builder) code(c Code) []*dicom.Element {
	var value *dicom.Element
	switch {
	case strings.HasPrefix(c.Value, "urn:") || strings.Contains(c.Value, "://"):
		value = b.str(tag.URNCodeValue, padEven(c.Value))
	case len(c.Value) > 16:
		value = b.str(tag.LongCodeValue, padEven(c.Value))
	default:
		value = b.str(tag.CodeValue, c.Value)
	}
	return []*dicom.Element{
		value,
		b.str(tag.CodingSchemeDesignator, c.Scheme),
		b.str(tag.CodeMeaning, c.Meaning),
	}
}

// padEven pads s with a trailing space to even length. The library pads UC and
// UR values with NUL, but PS3.5 6.2 wants a space for them.
func padEven(s string) string {
	if len(s)%2 == 1 {
		return s + " "
	}
	return s
}

// sortElements orders elements by tag, the order PS3.5 7.1 requires within a
// dataset and the library writes them in.
func sortElements(es []*dicom.Element) {
	slices.SortStableFunc(es, func(a, b *dicom.Element) int {
		if a.Tag.Group != b.Tag.Group {
			return int(a.Tag.Group) - int(b.Tag.Group)
		}
		return int(a.Tag.Element) - int(b.Tag.Element)
	})
}

// formatDS formats v as a Decimal String of at most 16 characters. It uses the
// shortest representation that reads back as exactly v, so values that came
// from a DS (such as ImagePositionPatient) are written back unchanged; only
// values that do not fit in 16 characters lose precision.
func formatDS(v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 64)
	for prec := 16; len(s) > 16 && prec > 0; prec-- {
		s = strconv.FormatFloat(v, 'g', prec, 64)
	}
	return s
}
