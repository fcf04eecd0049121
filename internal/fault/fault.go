// Package fault decides, once for the whole program, whether a failure is
// worth retrying. Every error segbridge produces carries its kind: permanent
// (the input, the model or the request is wrong, and trying again gives the
// same answer), transient (a neighbour was unreachable, busy or slow, and a
// later try may work) or cancelled (someone stopped the work). Packages mark
// their errors where they are made — a sentinel that wraps ErrPermanent, or a
// FaultKind method on an error type — and every caller reads the answer with
// Classify, so retry decisions cannot drift apart.
package fault

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
)

// Kind is what a failure means for retrying.
type Kind int

// The kinds of failure.
const (
	// KindTransient failures may go away: retry later. It is the default for an
	// error nobody marked, because a wrong "permanent" loses a job for good
	// while a wrong "transient" costs a few bounded retries.
	KindTransient Kind = iota
	// KindPermanent failures will not: fail at once, with the reason.
	KindPermanent
	// KindCancelled work was stopped on purpose (shutdown, a user's cancel).
	KindCancelled
)

func (k Kind) String() string {
	switch k {
	case KindPermanent:
		return "permanent"
	case KindCancelled:
		return "cancelled"
	}
	return "transient"
}

// ErrPermanent is wrapped by errors that no retry can fix. Packages declare
// their permanent sentinels with New, or wrap this one.
var ErrPermanent = errors.New("permanent failure")

// ErrCancelled is wrapped by errors of work stopped on purpose.
var ErrCancelled = errors.New("cancelled")

// Classifier is implemented by error types that know their own kind, such as
// an HTTP error whose status code decides.
type Classifier interface {
	FaultKind() Kind
}

// Classify returns the kind of err. A cancelled context counts as cancelled;
// otherwise the outermost error in the chain that implements Classifier
// decides, then ErrPermanent; anything else is transient. Classify(nil) is
// KindTransient, but callers only ask about errors.
func Classify(err error) Kind {
	if err == nil {
		return KindTransient
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrCancelled) {
		return KindCancelled
	}
	var c Classifier
	if errors.As(err, &c) {
		return c.FaultKind()
	}
	if errors.Is(err, ErrPermanent) {
		return KindPermanent
	}
	return KindTransient
}

// permanentError marks an error permanent without changing its message.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) FaultKind() Kind { return KindPermanent }

// Permanent marks err as permanent; nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// PanicError is a recovered panic: a bug or an input that a library could not
// take. It is permanent, since the same input panics again, and keeps the
// stack for the log (the job's reason shows only the value).
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string   { return fmt.Sprintf("internal error (panic): %v", e.Value) }
func (e *PanicError) FaultKind() Kind { return KindPermanent }

// Recovered turns the value of recover() into a *PanicError with the stack
// of the goroutine that panicked; call it in the deferred function itself. A
// value that already is a *PanicError (re-raised from another goroutine) is
// returned as it is, keeping that goroutine's stack.
func Recovered(r any) *PanicError {
	if pe, ok := r.(*PanicError); ok {
		return pe
	}
	return &PanicError{Value: r, Stack: debug.Stack()}
}

// New returns a sentinel error of the given kind, for a package to declare
// what its errors mean, e.g. var ErrInvalidSeries = fault.New(fault.KindPermanent,
// "invalid series"). Errors that wrap it classify as kind unless an outer
// error says otherwise.
func New(kind Kind, msg string) error { return &kindError{msg: msg, kind: kind} }

type kindError struct {
	msg  string
	kind Kind
}

func (e *kindError) Error() string   { return e.msg }
func (e *kindError) FaultKind() Kind { return e.kind }
