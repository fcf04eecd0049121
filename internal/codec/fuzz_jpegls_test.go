package codec

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/volume"
)

// FuzzPool_JPEGLS feeds CharLS, in a child, codestreams from the network's
// point of view: any bytes under a real frame's header. Each must decode or
// fail with a DecodeError, and the pool must decode the real frame after.
func FuzzPool_JPEGLS(f *testing.F) {
	frame, want := jlsFrame(f)
	f.Add(frame.Data)
	f.Add(frame.Data[:len(frame.Data)/2])
	f.Add([]byte{0xff, 0xd8, 0xff, 0xf7, 0x00, 0x0b, 0x10, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01, 0x11, 0x00})
	// A second of CPU per input: CharLS computes for seconds on some
	// (see slowJLS), which would read as a hang to the fuzzer.
	p := newTestPool(f, Config{Size: 1, CPULimit: time.Second})
	if err := p.DecodeFrame(context.Background(), frame, want); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := *frame
		g.Data = data
		err := p.DecodeFrame(context.Background(), &g, make([]byte, g.Size()))
		var de *DecodeError
		if err != nil && (!errors.As(err, &de) || !errors.Is(err, volume.ErrInvalidSeries)) {
			t.Fatalf("error %v (%T), want a *DecodeError", err, err)
		}
		dst := make([]byte, frame.Size())
		if err := p.DecodeFrame(context.Background(), frame, dst); err != nil || string(dst) != string(want) {
			t.Fatalf("the real frame after: %v", err)
		}
	})
}
