package dicomseg

import (
	"math"
	"regexp"
	"strings"
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
	n, err := pixelDataLength(len(frames), 3, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := packBinary(labels, 3, 3, frames, n)
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

func TestPixelDataLength(t *testing.T) {
	tests := []struct {
		name                     string
		frames, rows, cols, bits int
		want                     int
		wantErr                  string
	}{
		{name: "27 bits", frames: 3, rows: 3, cols: 3, bits: 1, want: 4},
		{name: "one byte, padded", frames: 1, rows: 1, cols: 1, bits: 8, want: 2},
		{name: "512x512 binary", frames: 2000, rows: 512, cols: 512, bits: 1, want: 2000 * 512 * 512 / 8},
		// 4 GiB of pixel data cannot be written with a 32-bit length.
		{name: "just fits", frames: 1, rows: 65535, cols: 65535, bits: 8, want: 65535*65535 + 1},
		{name: "two largest binary frames", frames: 2, rows: 65535, cols: 65535, bits: 1},
		{name: "binary over 4 GiB", frames: 8 * 2, rows: 65535, cols: 32769, bits: 1,
			wantErr: "16 frames of 32769x65535 pixels of 1 bits need more than the 4294967294 bytes"},
		{name: "fractional over 4 GiB", frames: 2, rows: 65535, cols: 65535, bits: 8,
			wantErr: "need more than the 4294967294 bytes of pixel data a DICOM element holds"},
		{name: "product wraps", frames: 1<<31 - 1, rows: 1 << 31, cols: 1 << 31, bits: 8,
			wantErr: "need more than the 4294967294 bytes"},
		{name: "NumberOfFrames beyond IS", frames: 1 << 31, rows: 1, cols: 1, bits: 1,
			wantErr: "2147483648 frames: NumberOfFrames (IS) holds at most 2147483647"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pixelDataLength(tt.frames, tt.rows, tt.cols, tt.bits)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("pixelDataLength = %d, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if tt.want == 0 {
				tt.want = (tt.frames*tt.rows*tt.cols*tt.bits + 7) / 8
				tt.want += tt.want % 2
			}
			if err != nil || got != tt.want {
				t.Fatalf("pixelDataLength = %d, %v; want %d", got, err, tt.want)
			}
		})
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
