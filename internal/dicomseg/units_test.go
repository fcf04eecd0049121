package dicomseg

import (
	"math"
	"regexp"
	"strconv"
	"testing"
)

func TestCIELab_Known(t *testing.T) {
	// Reference CIELab (D65) values of sRGB colours, L* in 0..100 and a*, b* in -128..127.
	tests := []struct {
		name    string
		rgb     [3]uint8
		l, a, b float64
	}{
		{"Black", [3]uint8{0, 0, 0}, 0, 0, 0},
		{"White", [3]uint8{255, 255, 255}, 100, 0, 0},
		{"Red", [3]uint8{255, 0, 0}, 53.24, 80.09, 67.20},
		{"Green", [3]uint8{0, 255, 0}, 87.73, -86.18, 83.18},
		{"Blue", [3]uint8{0, 0, 255}, 32.30, 79.19, -107.86},
		{"Grey", [3]uint8{128, 128, 128}, 53.59, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cieLab(tt.rgb)
			want := [3]float64{tt.l * 65535 / 100, (tt.a + 128) * 65535 / 255, (tt.b + 128) * 65535 / 255}
			for i := range got {
				// 0.02 units of L*a*b* are ~13 (L*) or ~5 (a*, b*) steps of 65535.
				if math.Abs(float64(got[i])-want[i]) > 15 {
					t.Errorf("cieLab(%v)[%d] = %d, want %.0f", tt.rgb, i, got[i], want[i])
				}
			}
		})
	}
}

func TestFormatDS_Fits(t *testing.T) {
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
			got := formatDS(tt.v)
			if got != tt.want {
				t.Errorf("formatDS(%v) = %q, want %q", tt.v, got, tt.want)
			}
			if len(got) > 16 {
				t.Errorf("formatDS(%v) = %q: longer than 16", tt.v, got)
			}
			back, err := strconv.ParseFloat(got, 64)
			if err != nil {
				t.Fatal(err)
			}
			if tt.exact && back != tt.v {
				t.Errorf("formatDS(%v) = %q reads back as %v", tt.v, got, back)
			}
		})
	}
}

func TestPackBinary_Layout(t *testing.T) {
	// Two 3x3 frames (9 bits each, so frame 2 starts mid-byte) from a 3x3x2 volume.
	labels := []uint8{
		1, 0, 0,
		0, 2, 0,
		0, 0, 1,

		0, 0, 0,
		0, 0, 0,
		1, 1, 1,
	}
	frames := []frameRef{{segment: 1, label: 1, k: 0}, {segment: 1, label: 1, k: 1}, {segment: 2, label: 2, k: 0}}
	got := packBinary(labels, 3, 3, frames)
	// Bits set: frame 0: 0, 8; frame 1: 9+6, 9+7, 9+8 = 15, 16, 17; frame 2: 18+4 = 22.
	want := []byte{0b00000001, 0b10000001, 0b01000011, 0x00}
	if len(got) != len(want) {
		t.Fatalf("len = %d, want %d (27 bits in 4 bytes, padded to even)", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("byte %d = %08b, want %08b", i, got[i], want[i])
		}
	}
}

func TestNewUID_Form(t *testing.T) {
	re := regexp.MustCompile(`^2\.25\.(0|[1-9][0-9]*)$`)
	seen := map[string]bool{}
	for range 1000 {
		u := NewUID()
		if !re.MatchString(u) || len(u) > 64 {
			t.Fatalf("NewUID() = %q: not a 2.25 UID of at most 64 characters", u)
		}
		if seen[u] {
			t.Fatalf("NewUID() repeated %q", u)
		}
		seen[u] = true
	}
	if !re.MatchString(implementationClassUID) {
		t.Errorf("implementationClassUID %q malformed", implementationClassUID)
	}
}
