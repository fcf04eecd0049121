package bridge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/segbridge/segbridge/internal/intake"
	"github.com/segbridge/segbridge/internal/queue"
	"github.com/segbridge/segbridge/internal/reconcile"
)

// Metrics are the bridge's counters that other parts report to: the intake
// counts the series it queued and skipped, by trigger and reason. Make them
// with NewMetrics, give them to the intake as its Observer and to the bridge
// in Config.Metrics.
type Metrics struct{ m *metrics }

var _ intake.Observer = (*Metrics)(nil)

// NewMetrics makes empty metrics.
func NewMetrics() *Metrics { return &Metrics{m: newMetrics()} }

// Queued counts a job queued by a trigger.
func (m *Metrics) Queued(trigger intake.Trigger) { m.m.countQueued(string(trigger)) }

// Skipped counts a series skipped by a trigger, with its reason.
func (m *Metrics) Skipped(trigger intake.Trigger, reason intake.SkipReason) {
	m.m.countSkipped(string(trigger), string(reason))
}

var (
	reconPassesDesc  = prometheus.NewDesc("segbridge_reconciler_passes_total", "Passes of the reconciler over Orthanc's changes, by result.", []string{"result"}, nil)
	reconSeriesDesc  = prometheus.NewDesc("segbridge_reconciler_series_total", "Series the reconciler handed to the intake, by outcome.", []string{"outcome"}, nil)
	reconUnannDesc   = prometheus.NewDesc("segbridge_reconciler_unannounced_total", "Series Orthanc reported stable without a StableSeries change (after a crash), handed to the intake.", nil, nil)
	reconDroppedDesc = prometheus.NewDesc("segbridge_reconciler_dropped_total", "Series seen arriving and deleted before they were stable.", nil, nil)
	reconPendingDesc = prometheus.NewDesc("segbridge_reconciler_pending", "Series seen arriving and not yet stable.", nil, nil)
)

// reconcilerCollector reads the reconciler's counts at each scrape.
type reconcilerCollector struct{ stats func() reconcile.Stats }

func (c reconcilerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{reconPassesDesc, reconSeriesDesc, reconUnannDesc, reconDroppedDesc, reconPendingDesc} {
		ch <- d
	}
}

func (c reconcilerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(reconPassesDesc, prometheus.CounterValue, float64(s.Passes), "ok")
	ch <- prometheus.MustNewConstMetric(reconPassesDesc, prometheus.CounterValue, float64(s.FailedPasses), "failed")
	ch <- prometheus.MustNewConstMetric(reconSeriesDesc, prometheus.CounterValue, float64(s.Queued), "queued")
	ch <- prometheus.MustNewConstMetric(reconSeriesDesc, prometheus.CounterValue, float64(s.Skipped), "skipped")
	ch <- prometheus.MustNewConstMetric(reconUnannDesc, prometheus.CounterValue, float64(s.Unannounced))
	ch <- prometheus.MustNewConstMetric(reconDroppedDesc, prometheus.CounterValue, float64(s.Dropped))
	ch <- prometheus.MustNewConstMetric(reconPendingDesc, prometheus.GaugeValue, float64(s.Pending))
}

// StatusWritten counts a status this process wrote (queue.Queue.OnWrite):
// the job ends and stage times it recorded.
func (m *Metrics) StatusWritten(st *queue.Status) { m.m.written(st) }

// Leader makes /metrics report whether this bridge leads (segbridge_leader)
// and report the cluster-wide gauges only while it does, so that a sum over
// several bridges counts them once. Without it the bridge reports them
// always, as the only bridge.
func (m *Metrics) Leader(leading func() bool) {
	m.m.mu.Lock()
	defer m.m.mu.Unlock()
	m.m.leading = leading
}

// Reconciler adds the reconciler's counts to /metrics.
func (m *Metrics) Reconciler(stats func() reconcile.Stats) error {
	return m.m.reg.Register(reconcilerCollector{stats})
}
