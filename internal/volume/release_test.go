package volume

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// released is a Parser.Release that reports each buffer on a channel.
func released() (func([]byte), chan []byte) {
	ch := make(chan []byte, 16)
	return func(b []byte) { ch <- b }, ch
}

// waitReleased collects garbage until want comes back on ch, or fails
// after a deadline: the runtime runs cleanups only after a collection
// finds their objects unreachable.
func waitReleased(t *testing.T, ch chan []byte, want []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		select {
		case got := <-ch:
			if &got[0] != &want[0] {
				t.Fatal("released a buffer that is not the file's")
			}
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatal("the file's buffer was not released once its instance was unreachable")
}

// notReleased fails if anything comes back on ch after two collections.
func notReleased(t *testing.T, ch chan []byte) {
	t.Helper()
	runtime.GC()
	runtime.GC()
	select {
	case <-ch:
		t.Fatal("released a buffer that an instance still reads")
	case <-time.After(20 * time.Millisecond):
	}
}

func TestParser_Release(t *testing.T) {
	t.Run("uncompressed: when the instance is gone", func(t *testing.T) {
		s := axialSynth(0)
		s.raw = u16(le, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000)
		data := s.encode(t)
		release, ch := released()
		in, err := Parser{Release: release}.ParseInstance(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		notReleased(t, ch)
		if got := in.Pixels(); got[11] != 1000 {
			t.Fatalf("pixel 11 is %v", got[11])
		}
		runtime.KeepAlive(in)
		in = nil
		waitReleased(t, ch, data)
	})
	t.Run("compressed: at once", func(t *testing.T) {
		s := axialSynth(0)
		s.raw = u16(le, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000)
		data := encapsulatedFile(t, s, tsRLELossless, [][]byte{nil, rleFrame(s.raw, 2)})
		release, ch := released()
		in, err := Parser{Release: release}.ParseInstance(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ch:
			if &got[0] != &data[0] {
				t.Fatal("released another buffer")
			}
		default:
			t.Fatal("an RLE file's buffer was kept although its pixels are decoded")
		}
		runtime.KeepAlive(in)
	})
	t.Run("refused: at once", func(t *testing.T) {
		data := append(make([]byte, 128), "DICM and nothing"...)
		release, ch := released()
		if _, err := (Parser{Release: release}).ParseInstance(context.Background(), data); err == nil {
			t.Fatal("no error")
		}
		select {
		case <-ch:
		default:
			t.Fatal("a refused file's buffer was kept")
		}
	})
	t.Run("enhanced: while any frame is reachable", func(t *testing.T) {
		files := fuzzSeeds()["enhanced, IS sizes"].instances()
		if len(files) == 0 {
			t.Fatal("no enhanced instance")
		}
		data := files[0]
		release, ch := released()
		in, err := Parser{Release: release}.ParseInstance(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		if len(in.Frames) < 2 {
			t.Fatalf("%d frames", len(in.Frames))
		}
		frame := in.Frames[1]
		in = nil
		notReleased(t, ch)
		_ = frame.Pixels()
		runtime.KeepAlive(frame)
		frame = nil
		waitReleased(t, ch, data)
	})
}
