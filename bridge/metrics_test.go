package bridge

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/segbridge/segbridge/internal/queue"
)

// sumOver adds up, over several bridges' registries, the samples of one
// metric whose labels include want, as a Prometheus sum() would; for a
// histogram it adds the sample counts.
func sumOver(t *testing.T, name string, want map[string]string, ms ...*Metrics) float64 {
	t.Helper()
	var total float64
	for _, m := range ms {
		fams, err := m.m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, s := range f.GetMetric() {
				if !hasLabels(s, want) {
					continue
				}
				switch {
				case s.Gauge != nil:
					total += s.Gauge.GetValue()
				case s.Counter != nil:
					total += s.Counter.GetValue()
				case s.Histogram != nil:
					total += float64(s.Histogram.GetSampleCount())
				}
			}
		}
	}
	return total
}

func hasLabels(s *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestMetrics_TwoBridgesAddUp(t *testing.T) {
	one, two := NewMetrics(), NewMetrics()
	leader := "one"
	one.Leader(func() bool { return leader == "one" })
	two.Leader(func() bool { return leader == "two" })
	for _, m := range []*Metrics{one, two} {
		m.m.depth = nil
	}

	job := func(n int, state queue.State) *queue.Status {
		return &queue.Status{Job: queue.Job{ID: string(rune('a' + n))}, State: state,
			Timings: map[string]float64{"inference": 100, "download": 20, "wait": 5}}
	}
	// Both bridges watch every status; each job's end is written by one.
	for n, state := range []queue.State{queue.StateDone, queue.StateDone, queue.StateDone, queue.StateFailed, queue.StateQueued} {
		st := job(n, state)
		one.m.status(st, false)
		two.m.status(st, false)
		if n%2 == 0 {
			one.StatusWritten(st)
		} else {
			two.StatusWritten(st)
		}
	}
	// A bridge also writes statuses that end nothing.
	one.StatusWritten(job(9, queue.StateRunning))

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"segbridge_jobs", map[string]string{"state": "done"}, 3},
		{"segbridge_jobs", map[string]string{"state": "queued"}, 1},
		{"segbridge_jobs_ended_total", map[string]string{"state": "done"}, 3},
		{"segbridge_jobs_ended_total", map[string]string{"state": "failed"}, 1},
		{"segbridge_stage_duration_seconds", map[string]string{"stage": "inference"}, 3},
		{"segbridge_stage_duration_seconds", map[string]string{"stage": "wait"}, 0},
		{"segbridge_leader", nil, 1},
	} {
		if got := sumOver(t, tc.name, tc.labels, one, two); got != tc.want {
			t.Errorf("sum of %s%v over both bridges = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}

	t.Run("after a change of leader the sum is the same", func(t *testing.T) {
		leader = "two"
		if got := sumOver(t, "segbridge_jobs", map[string]string{"state": "done"}, one, two); got != 3 {
			t.Errorf("sum of segbridge_jobs{done} = %v, want 3", got)
		}
		if got := sumOver(t, "segbridge_leader", nil, two); got != 1 {
			t.Errorf("the new leader reports segbridge_leader %v", got)
		}
	})
}
