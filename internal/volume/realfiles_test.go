package volume

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// What real files carry that a file written by the book does not: elements
// after the pixel data, padding inside it, and private sequences written as
// UN of undefined length. Each case starts from a synthetic slice and splices
// in the bytes such files hold; pydicom's own files with the same traits are
// in internal/codec's TestThirdParty_FilesOtherEncodersWrote.
func TestParseInstance_WhatRealFilesCarry(t *testing.T) {
	base := axialSynth(0)
	base.raw = u16(binary.LittleEndian, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
	file := base.encode(t)
	pixelTag := []byte{0xe0, 0x7f, 0x10, 0x00}
	at := bytes.LastIndex(file, pixelTag)
	if at < 0 {
		t.Fatal("no PixelData in the synthetic file")
	}
	want := base.parse(t).Pixels()
	splice := func(at int, b []byte) []byte {
		return append(append(append([]byte(nil), file[:at]...), b...), file[at:]...)
	}
	le := binary.LittleEndian
	// An implicit VR sequence of one item holding (0008,1150) UI and a
	// nested SQ of undefined length, as GE writes private sequences.
	implicitItem := func() []byte {
		var b []byte
		b = append(b, u16(le, 0x0008, 0x1150)...)
		b = append(b, u32(le, 4)...)
		b = append(b, "1.2\x00"...)
		b = append(b, u16(le, 0x0008, 0x1115)...)
		b = append(b, u32(le, 0xffffffff)...)
		b = append(b, u16(le, 0xfffe, 0xe000)...)
		b = append(b, u32(le, 0xffffffff)...)
		b = append(b, u16(le, 0x0020, 0x000e)...)
		b = append(b, u32(le, 4)...)
		b = append(b, "1.3\x00"...)
		b = append(b, u16(le, 0xfffe, 0xe00d)...)
		b = append(b, u32(le, 0)...)
		b = append(b, u16(le, 0xfffe, 0xe0dd)...)
		b = append(b, u32(le, 0)...)
		return b
	}
	unSequence := func(group uint16) []byte {
		var b []byte
		b = append(b, u16(le, group, 0x100c)...)
		b = append(b, "UN\x00\x00"...)
		b = append(b, u32(le, 0xffffffff)...)
		b = append(b, u16(le, 0xfffe, 0xe000)...)
		b = append(b, u32(le, 0xffffffff)...)
		b = append(b, implicitItem()...)
		b = append(b, u16(le, 0xfffe, 0xe00d)...)
		b = append(b, u32(le, 0)...)
		b = append(b, u16(le, 0xfffe, 0xe0dd)...)
		b = append(b, u32(le, 0)...)
		return b
	}
	trailing := append(append(u16(le, 0xfffc, 0xfffc), "OB\x00\x00"...), append(u32(le, 6), 0, 1, 2, 3, 4, 5)...)

	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{name: "Data Set Trailing Padding after the pixels", data: append(append([]byte(nil), file...), trailing...)},
		{name: "a private sequence of VR UN and undefined length", data: splice(at, unSequence(0x4453))},
		{name: "the same inside a sequence is refused by name",
			data: func() []byte {
				// (0008,1140) SQ of undefined length holding one item that
				// holds the UN sequence.
				var b []byte
				b = append(b, u16(le, 0x0008, 0x1140)...)
				b = append(b, "SQ\x00\x00"...)
				b = append(b, u32(le, 0xffffffff)...)
				b = append(b, u16(le, 0xfffe, 0xe000)...)
				b = append(b, u32(le, 0xffffffff)...)
				b = append(b, unSequence(0x0009)...)
				b = append(b, u16(le, 0xfffe, 0xe00d)...)
				b = append(b, u32(le, 0)...)
				b = append(b, u16(le, 0xfffe, 0xe0dd)...)
				b = append(b, u32(le, 0)...)
				i := bytes.Index(file, []byte{0x08, 0x00, 0x16, 0x00}) // before (0008,0016); nothing checks the order
				return splice(i, b)
			}(),
			wantErr: "a sequence of VR UN and undefined length inside another sequence is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := ParseInstance(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := in.Pixels(); !equalFloats(got, want) {
				t.Errorf("pixels %v, want %v", got, want)
			}
		})
	}

	t.Run("pixel data padded short of a plane is read; a plane more is refused", func(t *testing.T) {
		for _, extra := range []int{2, 22} {
			s := base
			s.raw = append(append([]byte(nil), base.raw...), make([]byte, extra)...)
			in, err := ParseInstance(s.encode(t))
			if err != nil || !equalFloats(in.Pixels(), want) {
				t.Fatalf("%d bytes of padding: %v", extra, err)
			}
		}
		s := base
		s.raw = append(append([]byte(nil), base.raw...), make([]byte, 24)...)
		if _, err := ParseInstance(s.encode(t)); err == nil || !strings.Contains(err.Error(), "pixel data holds 48 bytes") {
			t.Fatalf("a whole plane more: error %v", err)
		}
	})
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
