package queue

import (
	"fmt"
	"strings"
	"time"
)

// State is where a job stands.
type State string

// The states of a job. queued → running → done | failed; a queued job may be
// cancelled.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateDone      State = "done"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// Final reports whether s ends a job.
func (s State) Final() bool {
	return s == StateDone || s == StateFailed || s == StateCancelled
}

// Job is one request to segment one series with one model version.
type Job struct {
	// ID is derived from what the job means (see JobID) so that triggers for
	// the same work collapse into one job.
	ID           string `json:"id"`
	SeriesID     string `json:"series_id"`
	Model        string `json:"model"`
	ModelVersion string `json:"model_version"`
	// Trigger says what asked for it: "webhook", "manual", "reconciler".
	Trigger string `json:"trigger"`
	// Generation counts how many times this job id was (re)queued; a message
	// of an older generation is stale and skipped.
	Generation  uint64    `json:"generation"`
	RequestedAt time.Time `json:"requested_at"`
	// Force asks for a new SEG even when Orthanc already has one by this
	// model version; without it a worker that finds one records it as the
	// job's result instead of running the model again.
	Force bool `json:"force,omitempty"`
}

// JobID derives a job's id from the series and the model version. The id is
// a valid NATS KV key and JetStream message id: Orthanc ids are hex and
// dashes, and anything else in a model name or version becomes '_'.
func JobID(seriesID, model, version string) string {
	return seriesID + "." + keySafe(model) + "." + keySafe(version)
}

func keySafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// Status is a job's record: the job and how far it got.
type Status struct {
	Job
	State State `json:"state"`
	// Stage is the pipeline stage a running job is in (download, volume,
	// inference, encode, upload).
	Stage string `json:"stage,omitempty"`
	// Progress is the fraction of the current stage done, 0..1.
	Progress float64 `json:"progress,omitempty"`
	// Attempts counts deliveries to a worker in this generation.
	Attempts int `json:"attempts"`
	// Error says why a failed job failed, or why the last attempt did.
	Error string `json:"error,omitempty"`
	// Worker names the worker that ran it last.
	Worker string `json:"worker,omitempty"`
	// SEGSeriesID and SEGInstanceID are the Orthanc ids of the stored SEG.
	SEGSeriesID   string `json:"seg_series_id,omitempty"`
	SEGInstanceID string `json:"seg_instance_id,omitempty"`
	// Timings holds stage durations in milliseconds.
	Timings    map[string]float64 `json:"timings_ms,omitempty"`
	UpdatedAt  time.Time          `json:"updated_at"`
	StartedAt  *time.Time         `json:"started_at,omitempty"`
	FinishedAt *time.Time         `json:"finished_at,omitempty"`
}

func (s *Status) String() string {
	return fmt.Sprintf("job %s %s", s.ID, s.State)
}
