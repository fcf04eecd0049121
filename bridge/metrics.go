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
// state). Several bridges may share one queue, and each is scraped, so
// every figure is either this bridge's own share of the work (its requests,
// the jobs it queued, the job ends it recorded — also for remote workers,
// whose results go through one bridge each) and adds up across bridges, or
// a fact about the whole cluster (jobs by state, from watching the status
// bucket; the queue's depth, read at each scrape), which only the leader
// reports so that a sum over bridges counts it once.
type metrics struct {
	reg      *prometheus.Registry
	queued   *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	ended    *prometheus.CounterVec
	stages   *prometheus.HistogramVec
	webhookN *prometheus.CounterVec
	webhookT *prometheus.HistogramVec

	mu     sync.Mutex
	states map[string]queue.State // job id -> state
	depth  func(ctx context.Context) (uint64, error)
	// leading says whether this bridge reports the cluster-wide figures;
	// nil: it does (a single bridge).
	leading func() bool
}

var (
	jobsDesc   = prometheus.NewDesc("segbridge_jobs", "Jobs in the status bucket by state (reported by the leading bridge only).", []string{"state"}, nil)
	depthDesc  = prometheus.NewDesc("segbridge_queue_depth", "Jobs waiting in the work queue, not yet acknowledged (reported by the leading bridge only).", nil, nil)
	leaderDesc = prometheus.NewDesc("segbridge_leader", "1 when this bridge leads the bridges sharing its queue (it reconciles and reports segbridge_jobs and segbridge_queue_depth), else 0.", nil, nil)
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
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segbridge_jobs_ended_total", Help: "Jobs this bridge recorded as ended (for its own and for remote workers), by state.",
		}, []string{"state"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "segbridge_stage_duration_seconds", Help: "Time jobs this bridge recorded as done spent in each pipeline stage.", Buckets: durationBuckets,
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
	}
	m.reg.MustRegister(m.queued, m.skipped, m.ended, m.stages, m.webhookN, m.webhookT, m)
	return m
}

// Describe and Collect make the job-state gauge and the queue depth, both
// computed at scrape time.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- depthDesc
	ch <- leaderDesc
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	leading := m.leading
	m.mu.Unlock()
	if leading != nil {
		if !leading() {
			ch <- prometheus.MustNewConstMetric(leaderDesc, prometheus.GaugeValue, 0)
			return
		}
		ch <- prometheus.MustNewConstMetric(leaderDesc, prometheus.GaugeValue, 1)
	}
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

// status takes one status from the watch, for the jobs-by-state gauge.
func (m *metrics) status(st *queue.Status, _ bool) {
	m.mu.Lock()
	m.states[st.ID] = st.State
	m.mu.Unlock()
}

// written takes a status this bridge wrote: a job it saw end is counted
// here, once across all bridges.
func (m *metrics) written(st *queue.Status) {
	if !st.State.Final() {
		return
	}
	m.ended.WithLabelValues(string(st.State)).Inc()
	if st.State != queue.StateDone {
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
