package bridge

import (
	"github.com/segbridge/segbridge/internal/intake"
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
