package checked

import (
	"math"
	"math/big"
	"testing"
)

func TestMul(t *testing.T) {
	tests := []struct {
		name    string
		factors []int
		want    int
		wantOK  bool
	}{
		{name: "none", want: 1, wantOK: true},
		{name: "one", factors: []int{7}, want: 7, wantOK: true},
		{name: "volume", factors: []int{512, 512, 2048, 4}, want: 1 << 31, wantOK: true},
		{name: "max int", factors: []int{math.MaxInt, 1}, want: math.MaxInt, wantOK: true},
		// The reported series: Rows and Columns 2^31, 4 bytes a pixel: 2^64 wraps to 0.
		{name: "wraps to zero", factors: []int{1 << 31, 1 << 31, 4}, wantOK: false},
		{name: "just over", factors: []int{1 << 31, 1 << 32}, wantOK: false},
		{name: "over then zero", factors: []int{1 << 40, 1 << 40, 0}, want: 0, wantOK: true},
		{name: "negative", factors: []int{-1, 5}, wantOK: false},
		{name: "negative after zero", factors: []int{0, -1}, wantOK: false},
		{name: "two negatives", factors: []int{-2, -3}, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Mul(tt.factors...)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Mul(%v) = %d, %v; want %d, %v", tt.factors, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// FuzzMul compares Mul with arbitrary-precision arithmetic.
func FuzzMul(f *testing.F) {
	f.Add(int64(1<<31), int64(1<<31), int64(4))
	f.Add(int64(-1), int64(0), int64(3))
	f.Add(int64(math.MaxInt64), int64(1), int64(1))
	f.Fuzz(func(t *testing.T, a, b, c int64) {
		got, ok := Mul(int(a), int(b), int(c))
		exact := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
		exact.Mul(exact, big.NewInt(c))
		wantOK := a >= 0 && b >= 0 && c >= 0 && exact.IsInt64() && exact.Int64() <= math.MaxInt
		if ok != wantOK {
			t.Fatalf("Mul(%d, %d, %d) ok = %v, want %v (exact %s)", a, b, c, ok, wantOK, exact)
		}
		if ok && int64(got) != exact.Int64() {
			t.Fatalf("Mul(%d, %d, %d) = %d, want %s", a, b, c, got, exact)
		}
	})
}
