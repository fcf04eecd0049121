package volume

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// withSequence returns s encoded with a ReferencedImageSequence of two items
// inserted before PixelData, so the corpus exercises nested lengths.
func withSequence(t testing.TB, s synth) []byte {
	t.Helper()
	data := s.encode(t)
	parsed, err := dicom.Parse(bytes.NewReader(data), int64(len(data)), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		t.Fatalf("parse seed: %v", err)
	}
	var items [][]*dicom.Element
	for _, sop := range []string{"1.2.3.4.1", "1.2.3.4.2"} {
		a, err := dicom.NewElement(tag.ReferencedSOPClassUID, []string{mrImageStorage})
		if err != nil {
			t.Fatal(err)
		}
		b, err := dicom.NewElement(tag.ReferencedSOPInstanceUID, []string{sop})
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, []*dicom.Element{a, b})
	}
	seq, err := dicom.NewElement(tag.ReferencedImageSequence, items)
	if err != nil {
		t.Fatal(err)
	}
	parsed.Elements = append(parsed.Elements, seq)
	slices.SortStableFunc(parsed.Elements, func(a, b *dicom.Element) int { return a.Tag.Compare(b.Tag) })
	var buf bytes.Buffer
	if err := dicom.Write(&buf, parsed, dicom.SkipVRVerification()); err != nil {
		t.Fatalf("write seed: %v", err)
	}
	return buf.Bytes()
}

// definedLengths rewrites the undefined-length ReferencedImageSequence (and
// its items) that dicom.Write produces in explicit little endian into the
// defined-length form pydicom and many scanners write.
func definedLengths(t testing.TB, b []byte) []byte {
	t.Helper()
	i := bytes.Index(b, []byte{0x08, 0x00, 0x40, 0x11, 'S', 'Q', 0, 0, 0xff, 0xff, 0xff, 0xff})
	if i < 0 {
		t.Fatal("no undefined-length ReferencedImageSequence")
	}
	pos := i + 12
	var body []byte
	for !bytes.HasPrefix(b[pos:], []byte{0xfe, 0xff, 0xdd, 0xe0}) {
		pos += 8 // item header with undefined length
		end := pos + bytes.Index(b[pos:], []byte{0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0})
		body = append(body, 0xfe, 0xff, 0x00, 0xe0)
		body = le.AppendUint32(body, uint32(end-pos))
		body = append(body, b[pos:end]...)
		pos = end + 8
	}
	pos += 8 // sequence delimiter
	out := slices.Clone(b[:i+8])
	out = le.AppendUint32(out, uint32(len(body)))
	out = append(out, body...)
	return append(out, b[pos:]...)
}

func FuzzParseInstance(f *testing.F) {
	explicit := axialSynth(0)
	explicit.raw = u16(le, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
	explicit.slope, explicit.intercept = "0.5", "-100"
	f.Add(explicit.encode(f))

	implicit8 := axialSynth(1)
	implicit8.ts, implicit8.bits, implicit8.pixRep = tsImplicitLE, 8, 1
	f.Add(implicit8.encode(f))
	f.Add(withSequence(f, implicit8))

	f.Add(definedLengths(f, withSequence(f, explicit)))

	big := axialSynth(2)
	big.ts, big.bitsStored = tsExplicitBE, 12
	f.Add(withSequence(f, big))

	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := ParseInstance(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSeries) {
				t.Fatalf("error %q does not wrap ErrInvalidSeries", err)
			}
			return
		}
		if got := len(in.Pixels()); got != in.Rows*in.Cols {
			t.Fatalf("Pixels() has %d values for %dx%d", got, in.Cols, in.Rows)
		}
		if _, err := Assemble([]*Instance{in}, Limits{}); err != nil && !errors.Is(err, ErrInvalidSeries) {
			t.Fatalf("Assemble error %q does not wrap ErrInvalidSeries", err)
		}
	})
}

func TestParseInstance_NestedSequence(t *testing.T) {
	for _, ts := range []string{tsExplicitLE, tsImplicitLE, tsExplicitBE} {
		t.Run(ts, func(t *testing.T) {
			s := axialSynth(0)
			s.ts = ts
			s.raw = u16(be, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
			if ts != tsExplicitBE {
				s.raw = u16(le, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
			}
			data := withSequence(t, s)
			if ts == tsExplicitLE {
				data = definedLengths(t, data)
			}
			in, err := ParseInstance(data)
			if err != nil {
				t.Fatalf("ParseInstance: %v", err)
			}
			if got := in.Pixels(); got[0] != 1 || got[11] != 12 {
				t.Errorf("Pixels() = %v", got)
			}
			if _, err := in.Header.FindElementByTag(tag.ReferencedImageSequence); err != nil {
				t.Errorf("Header lost the sequence: %v", err)
			}
		})
	}
}
