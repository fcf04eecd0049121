package bridge

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segbridge/segbridge/internal/queue"
)

// The Prometheus text format is written by hand: four metric families do
// not justify client_golang's dependency tree (protobuf, procfs, common).

// durationBuckets are the upper bounds, in seconds, of the histograms.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

type histogram struct {
	counts []uint64 // per bucket, not cumulative
	sum    float64
	n      uint64
}

func (h *histogram) observe(v float64) {
	if h.counts == nil {
		h.counts = make([]uint64, len(durationBuckets))
	}
	for i, b := range durationBuckets {
		if v <= b {
			h.counts[i]++
			break
		}
	}
	h.sum += v
	h.n++
}

// metrics holds what /metrics reports. Job states and stage durations come
// from watching the status bucket, so jobs run by remote workers count too.
type metrics struct {
	mu      sync.Mutex
	states  map[string]queue.State // job id -> state
	seen    map[string]uint64      // job id -> generation whose timings were observed
	stages  map[string]*histogram  // stage -> seconds
	webhook map[int]*histogram     // HTTP status -> seconds
	queued  map[string]uint64      // trigger -> jobs queued by this bridge
	skipped map[[2]string]uint64   // (trigger, reason) -> series skipped
}

func newMetrics() *metrics {
	return &metrics{
		states:  map[string]queue.State{},
		seen:    map[string]uint64{},
		stages:  map[string]*histogram{},
		webhook: map[int]*histogram{},
		queued:  map[string]uint64{},
		skipped: map[[2]string]uint64{},
	}
}

// status takes one status from the watch. Timings of jobs that were already
// done when the bridge started are not observed again.
func (m *metrics) status(st *queue.Status, initial bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[st.ID] = st.State
	if st.State != queue.StateDone || m.seen[st.ID] >= st.Generation && st.Generation > 0 {
		return
	}
	m.seen[st.ID] = st.Generation
	if initial {
		return
	}
	for stage, msec := range st.Timings {
		if stage == "wait" || stage == "end_to_end" {
			continue
		}
		h := m.stages[stage]
		if h == nil {
			h = &histogram{}
			m.stages[stage] = h
		}
		h.observe(msec / 1000)
	}
}

func (m *metrics) observeWebhook(code int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.webhook[code]
	if h == nil {
		h = &histogram{}
		m.webhook[code] = h
	}
	h.observe(d.Seconds())
}

func (m *metrics) countQueued(trigger string) {
	m.mu.Lock()
	m.queued[trigger]++
	m.mu.Unlock()
}

func (m *metrics) countSkipped(trigger, reason string) {
	m.mu.Lock()
	m.skipped[[2]string{trigger, reason}]++
	m.mu.Unlock()
}

// write writes the metrics in Prometheus' text exposition format 0.0.4.
func (m *metrics) write(w io.Writer, depth uint64, depthErr error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if depthErr == nil {
		fmt.Fprintf(w, "# HELP segbridge_queue_depth Jobs waiting in the work queue (not yet acknowledged).\n# TYPE segbridge_queue_depth gauge\nsegbridge_queue_depth %d\n", depth)
	}
	byState := map[queue.State]int{}
	for _, s := range m.states {
		byState[s]++
	}
	fmt.Fprintf(w, "# HELP segbridge_jobs Jobs in the status bucket by state.\n# TYPE segbridge_jobs gauge\n")
	for _, s := range queue.States {
		fmt.Fprintf(w, "segbridge_jobs{state=%q} %d\n", s, byState[s])
	}
	fmt.Fprintf(w, "# HELP segbridge_jobs_queued_total Jobs this bridge queued, by trigger.\n# TYPE segbridge_jobs_queued_total counter\n")
	for _, k := range sortedKeys(m.queued) {
		fmt.Fprintf(w, "segbridge_jobs_queued_total{trigger=%q} %d\n", k, m.queued[k])
	}
	fmt.Fprintf(w, "# HELP segbridge_series_skipped_total Series the intake did not queue, by trigger and reason.\n# TYPE segbridge_series_skipped_total counter\n")
	skips := make([][2]string, 0, len(m.skipped))
	for k := range m.skipped {
		skips = append(skips, k)
	}
	sort.Slice(skips, func(i, j int) bool { return skips[i][0]+skips[i][1] < skips[j][0]+skips[j][1] })
	for _, k := range skips {
		fmt.Fprintf(w, "segbridge_series_skipped_total{trigger=%q,reason=%q} %d\n", k[0], k[1], m.skipped[k])
	}
	fmt.Fprintf(w, "# HELP segbridge_stage_duration_seconds Time jobs spent in each pipeline stage.\n# TYPE segbridge_stage_duration_seconds histogram\n")
	for _, k := range sortedKeys(m.stages) {
		writeHistogram(w, "segbridge_stage_duration_seconds", fmt.Sprintf("stage=%q", k), m.stages[k])
	}
	codes := make([]int, 0, len(m.webhook))
	for c := range m.webhook {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	// A counter beside the histogram: Orthanc's Lua HttpPost cannot say why
	// a post failed, so a wrong token shows here as a climbing code="401".
	fmt.Fprintf(w, "# HELP segbridge_webhook_requests_total Webhook requests answered, by HTTP status.\n# TYPE segbridge_webhook_requests_total counter\n")
	for _, c := range codes {
		fmt.Fprintf(w, "segbridge_webhook_requests_total{code=\"%d\"} %d\n", c, m.webhook[c].n)
	}
	fmt.Fprintf(w, "# HELP segbridge_webhook_duration_seconds Time to answer Orthanc's webhook, by HTTP status.\n# TYPE segbridge_webhook_duration_seconds histogram\n")
	for _, c := range codes {
		writeHistogram(w, "segbridge_webhook_duration_seconds", fmt.Sprintf("code=\"%d\"", c), m.webhook[c])
	}
}

func writeHistogram(w io.Writer, name, labels string, h *histogram) {
	var cum uint64
	for i, b := range durationBuckets {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{%s,le=\"%s\"} %d\n", name, labels, formatFloat(b), cum)
	}
	fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n", name, labels, h.n)
	fmt.Fprintf(w, "%s_sum{%s} %s\n", name, labels, formatFloat(h.sum))
	fmt.Fprintf(w, "%s_count{%s} %d\n", name, labels, h.n)
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strings.TrimSuffix(fmt.Sprintf("%g", f), ".0")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// depth reads the queue depth for a scrape, bounded in time.
func (s *Server) depth(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.queue.Depth(ctx)
}
