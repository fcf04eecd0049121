package bridge

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segbridge/segbridge/internal/queue"
)

// durationBuckets are the upper bounds, in seconds, of the histograms.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// metrics holds what /metrics reports, in a registry of its own (no global
// state). Job states and stage durations come from watching the status
// bucket, so jobs run by remote workers count too; the queue's depth is read
// at each scrape.
type metrics struct {
	reg      *prometheus.Registry
	queued   *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	stages   *prometheus.HistogramVec
	webhookN *prometheus.CounterVec
	webhookT *prometheus.HistogramVec

	mu     sync.Mutex
	states map[string]queue.State // job id -> state
	seen   map[string]uint64      // job id -> generation whose timings were observed
	depth  func(ctx context.Context) (uint64, error)
}

var (
	jobsDesc  = prometheus.NewDesc("segbridge_jobs", "Jobs in the status bucket by state.", []string{"state"}, nil)
	depthDesc = prometheus.NewDesc("segbridge_queue_depth", "Jobs waiting in the work queue (not yet acknowledged).", nil, nil)
)

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		queued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segbridge_jobs_queued_total", Help: "Jobs this bridge queued, by trigger.",
		}, []string{"trigger"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segbridge_series_skipped_total", Help: "Series the intake did not queue, by trigger and reason.",
		}, []string{"trigger", "reason"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "segbridge_stage_duration_seconds", Help: "Time jobs spent in each pipeline stage.", Buckets: durationBuckets,
		}, []string{"stage"}),
		// A counter beside the histogram: Orthanc's Lua HttpPost cannot say
		// why a post failed, so a wrong token shows here as a climbing
		// code="401".
		webhookN: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segbridge_webhook_requests_total", Help: "Webhook requests answered, by HTTP status.",
		}, []string{"code"}),
		webhookT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "segbridge_webhook_duration_seconds", Help: "Time to answer Orthanc's webhook, by HTTP status.", Buckets: durationBuckets,
		}, []string{"code"}),
		states: map[string]queue.State{},
		seen:   map[string]uint64{},
	}
	m.reg.MustRegister(m.queued, m.skipped, m.stages, m.webhookN, m.webhookT, m)
	return m
}

// Describe and Collect make the job-state gauge and the queue depth, both
// computed at scrape time.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- depthDesc
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	byState := map[queue.State]int{}
	for _, s := range m.states {
		byState[s]++
	}
	depth := m.depth
	m.mu.Unlock()
	for _, s := range queue.States {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(byState[s]), string(s))
	}
	if depth != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if n, err := depth(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(n))
		}
	}
}

// status takes one status from the watch. Timings of jobs that were already
// done when the bridge started are not observed again.
func (m *metrics) status(st *queue.Status, initial bool) {
	m.mu.Lock()
	m.states[st.ID] = st.State
	observe := st.State == queue.StateDone && !(m.seen[st.ID] >= st.Generation && st.Generation > 0)
	if observe {
		m.seen[st.ID] = st.Generation
	}
	m.mu.Unlock()
	if !observe || initial {
		return
	}
	for stage, msec := range st.Timings {
		if stage == "wait" || stage == "end_to_end" {
			continue
		}
		m.stages.WithLabelValues(stage).Observe(msec / 1000)
	}
}

func (m *metrics) observeWebhook(code int, d time.Duration) {
	c := strconv.Itoa(code)
	m.webhookN.WithLabelValues(c).Inc()
	m.webhookT.WithLabelValues(c).Observe(d.Seconds())
}

func (m *metrics) countQueued(trigger string) { m.queued.WithLabelValues(trigger).Inc() }

func (m *metrics) countSkipped(trigger, reason string) {
	m.skipped.WithLabelValues(trigger, reason).Inc()
}
