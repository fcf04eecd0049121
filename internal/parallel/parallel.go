// Package parallel spreads a loop over the CPUs and brings a panic in any of
// its goroutines back to the goroutine that called it. A panic in a goroutine
// that nothing recovers ends the process — for segbridge serve, the bridge,
// the embedded NATS server and every worker at once — so work that one job
// fans out must fail that job alone: one recover per job, upstream in the
// caller's goroutine, then catches everything the job's goroutines did.
package parallel

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Panic is the value Range panics with in the calling goroutine when fn
// panicked in one of its goroutines.
type Panic struct {
	// Value is what the goroutine panicked with.
	Value any
	// Stack is the panicking goroutine's stack, from runtime/debug.Stack:
	// the caller's own stack would not show where the panic happened.
	Stack []byte
}

// Error says what the goroutine panicked with and where.
func (p *Panic) Error() string {
	return fmt.Sprintf("panic in a parallel goroutine: %v\n\n%s", p.Value, p.Stack)
}

// Unwrap returns Value when it is an error (a runtime.Error for an index
// out of range, say), so that errors.As finds it.
func (p *Panic) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// Range runs fn over [0, n) split into contiguous ranges [lo, hi), one per
// CPU (GOMAXPROCS), each on its own goroutine, and returns when all have
// returned. If fn panics on any of them, Range waits for the others and then
// panics in the caller's goroutine with a *Panic holding the first panic's
// value and stack (a *Panic from a nested Range is passed on as it is). With
// one CPU or n of 1, fn runs in the caller's goroutine, where a panic needs
// no carrying. Range does nothing when n < 1.
func Range(n int, fn func(lo, hi int)) {
	split(n, runtime.GOMAXPROCS(0), fn)
}

// split is Range on a given number of goroutines.
func split(n, workers int, fn func(lo, hi int)) {
	if n < 1 {
		return
	}
	workers = min(workers, n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first *Panic
	)
	// Ranges as n/workers each and one more for the first n%workers, which
	// cannot overflow as n*w/workers could for a huge n.
	size, extra := n/workers, n%workers
	for w := range workers {
		lo := w*size + min(w, extra)
		hi := lo + size
		if w < extra {
			hi++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					p, ok := r.(*Panic)
					if !ok {
						p = &Panic{Value: r, Stack: debug.Stack()}
					}
					once.Do(func() { first = p })
				}
			}()
			fn(lo, hi)
		}()
	}
	wg.Wait()
	if first != nil {
		panic(first)
	}
}
