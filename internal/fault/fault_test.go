package fault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

type httpErr struct{ code int }

func (e *httpErr) Error() string { return fmt.Sprintf("status %d", e.code) }
func (e *httpErr) FaultKind() Kind {
	if e.code >= 500 {
		return KindTransient
	}
	return KindPermanent
}

var errBadSeries = fmt.Errorf("invalid series: %w", ErrPermanent)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Kind
	}{
		{"plain", errors.New("connection refused"), KindTransient},
		{"sentinel", fmt.Errorf("series x: %w", errBadSeries), KindPermanent},
		{"marked", Permanent(errors.New("no instances")), KindPermanent},
		{"wrapped mark", fmt.Errorf("job: %w", Permanent(errors.New("x"))), KindPermanent},
		{"classifier 4xx", fmt.Errorf("read: %w", &httpErr{404}), KindPermanent},
		{"classifier 5xx", fmt.Errorf("read: %w", &httpErr{503}), KindTransient},
		{"outer classifier wins", Permanent(&httpErr{503}), KindPermanent},
		{"context cancelled", fmt.Errorf("download: %w", context.Canceled), KindCancelled},
		{"cancelled beats permanent", errors.Join(errBadSeries, context.Canceled), KindCancelled},
		{"deadline is transient", context.DeadlineExceeded, KindTransient},
		{"cancelled sentinel", fmt.Errorf("job: %w", ErrCancelled), KindCancelled},
		{"panic", &PanicError{Value: "boom"}, KindPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestPermanent_KeepsMessageAndChain(t *testing.T) {
	base := errors.New("boom")
	err := Permanent(base)
	if err.Error() != "boom" || !errors.Is(err, base) {
		t.Fatalf("Permanent changed the error: %v", err)
	}
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
}

func TestRecovered(t *testing.T) {
	var pe *PanicError
	func() {
		defer func() { pe = Recovered(recover()) }()
		var s []int
		_ = s[3]
	}()
	if !strings.Contains(pe.Error(), "index out of range") || !strings.Contains(string(pe.Stack), "TestRecovered") {
		t.Fatalf("got %q with stack:\n%s", pe.Error(), pe.Stack)
	}
	if again := Recovered(pe); again != pe {
		t.Fatal("a re-raised PanicError lost its original stack")
	}
}

func TestNew(t *testing.T) {
	errBad := New(KindPermanent, "invalid series")
	err := fmt.Errorf("series 1: %w", errBad)
	if Classify(err) != KindPermanent || !errors.Is(err, errBad) || err.Error() != "series 1: invalid series" {
		t.Fatalf("got %v (%v)", err, Classify(err))
	}
	if Classify(fmt.Errorf("x: %w", New(KindTransient, "busy"))) != KindTransient {
		t.Fatal("a transient sentinel classified otherwise")
	}
}
