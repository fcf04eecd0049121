package parallel

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

func TestRange_CoversEveryIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 7, 64, 1000} {
		for _, workers := range []int{1, 2, 3, 8, 2000} {
			t.Run(fmt.Sprintf("n=%d,workers=%d", n, workers), func(t *testing.T) {
				hits := make([]atomic.Int32, n)
				var calls atomic.Int32
				split(n, workers, func(lo, hi int) {
					calls.Add(1)
					if lo >= hi {
						t.Errorf("empty range [%d, %d)", lo, hi)
					}
					for i := lo; i < hi; i++ {
						hits[i].Add(1)
					}
				})
				for i := range hits {
					if got := hits[i].Load(); got != 1 {
						t.Errorf("index %d visited %d times", i, got)
					}
				}
				if want := min(n, workers); int(calls.Load()) != want {
					t.Errorf("fn called %d times, want %d", calls.Load(), want)
				}
			})
		}
	}
}

// TestRange_PanicReachesCaller is the point of the package: a panic on a
// worker goroutine is recovered by a recover in the caller's goroutine, after
// every worker stopped, with the original value and the worker's stack.
func TestRange_PanicReachesCaller(t *testing.T) {
	var done atomic.Int32
	recovered := func() (r any) {
		defer func() { r = recover() }()
		split(8, 4, func(lo, hi int) {
			defer done.Add(1)
			if lo == 6 {
				var s []int
				_ = s[hi] // index out of range, a runtime.Error
			}
		})
		return nil
	}()
	p, ok := recovered.(*Panic)
	if !ok {
		t.Fatalf("recover() = %#v, want a *Panic", recovered)
	}
	if got := done.Load(); got != 4 {
		t.Errorf("%d of 4 workers had finished when the panic reached the caller", got)
	}
	var rerr runtime.Error
	if !errors.As(p, &rerr) || !strings.Contains(rerr.Error(), "index out of range [8] with length 0") {
		t.Errorf("Panic does not carry the original runtime.Error: Value = %#v", p.Value)
	}
	// The stack is the worker's, so it shows the closure that panicked.
	if !strings.Contains(string(p.Stack), "TestRange_PanicReachesCaller.func") {
		t.Errorf("Panic.Stack does not show the panicking closure:\n%s", p.Stack)
	}
	if !strings.Contains(p.Error(), "index out of range") {
		t.Errorf("Error() = %q", p.Error())
	}
}

func TestRange_FirstPanicAndNested(t *testing.T) {
	recovered := func() (r any) {
		defer func() { r = recover() }()
		split(4, 2, func(lo, hi int) {
			// A nested fan-out's *Panic is passed on, not wrapped again.
			split(4, 2, func(lo, hi int) { panic(fmt.Sprintf("inner %d", lo)) })
		})
		return nil
	}()
	p, ok := recovered.(*Panic)
	if !ok {
		t.Fatalf("recover() = %#v, want a *Panic", recovered)
	}
	if s, ok := p.Value.(string); !ok || !strings.HasPrefix(s, "inner ") {
		t.Errorf("Value = %#v, want the inner panic's string", p.Value)
	}
}

func TestRange_OneWorkerRunsInCaller(t *testing.T) {
	recovered := func() (r any) {
		defer func() { r = recover() }()
		split(5, 1, func(lo, hi int) { panic("plain") })
		return nil
	}()
	if recovered != "plain" {
		t.Errorf("recover() = %#v, want the plain value from the caller's goroutine", recovered)
	}
}
