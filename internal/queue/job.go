package queue

import (
	"fmt"
	"strings"
	"time"
)

// State is where a job stands.
type State string

// The states of a job:
//
//	queued → running → done | failed | skipped
//	   ↑        │
//	   └────────┘ retry later, hand back, lease lost
//	queued | running → cancelled
//
// Only the named transitions in transitions.go move a job between them.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateDone      State = "done"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
	// StateSkipped ends a job whose worker found that the model must not run
	// on the series (a rule that needs the series' headers, which the intake
	// cannot read when Orthanc's webhook calls it).
	StateSkipped State = "skipped"
)

// States lists every state, in the order of a job's life.
var States = []State{StateQueued, StateRunning, StateDone, StateFailed, StateSkipped, StateCancelled}

// Final reports whether s ends a job.
func (s State) Final() bool {
	return s == StateDone || s == StateFailed || s == StateCancelled || s == StateSkipped
}

// Valid reports whether s is one of the states.
func (s State) Valid() bool {
	switch s {
	case StateQueued, StateRunning, StateDone, StateFailed, StateCancelled, StateSkipped:
		return true
	}
	return false
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
	// of an older generation is stale and never runs.
	Generation  uint64    `json:"generation"`
	RequestedAt time.Time `json:"requested_at"`
	// Force asks for a new result even when Orthanc already has one by this
	// model version; without it a worker that finds one records it as the
	// job's result instead of running the model again.
	Force bool `json:"force,omitempty"`
	// Changed says the series gained or lost instances since its last done
	// generation: the worker makes a new result without looking for one in
	// Orthanc (it would find the old one), but the model's rules still apply.
	Changed bool `json:"changed,omitempty"`
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

// validJobID reports whether id has the form JobID makes; anything else is
// refused before it reaches the KV store.
func validJobID(id string) bool {
	if len(id) == 0 || len(id) > 256 {
		return false
	}
	parts := strings.Split(id, ".")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return false
	}
	return keySafe(parts[1]) == parts[1] && keySafe(parts[2]) == parts[2] && validSeriesID(parts[0])
}

// validSeriesID reports whether id looks like an Orthanc id (five groups of
// eight hex digits).
func validSeriesID(id string) bool {
	if len(id) != 44 {
		return false
	}
	for i, r := range id {
		if i%9 == 8 {
			if r != '-' {
				return false
			}
			continue
		}
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
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
	// Error says why a failed job failed, why a skipped one was skipped, or
	// why the last attempt failed.
	Error string `json:"error,omitempty"`
	// Warnings are what a done job's result should be read with (a segment
	// outside its expected volume, for instance).
	Warnings []string `json:"warnings,omitempty"`
	// Worker names the worker that ran it last.
	Worker string `json:"worker,omitempty"`
	// Source is "orthanc" when the result was found in Orthanc (a SEG by
	// this model version) instead of being made by this job's run.
	Source string `json:"source,omitempty"`
	// SEGSeriesID and SEGInstanceID are the Orthanc ids of the stored SEG.
	SEGSeriesID   string `json:"seg_series_id,omitempty"`
	SEGInstanceID string `json:"seg_instance_id,omitempty"`
	// SRSeriesID and PreviewSeriesID are the Orthanc ids of the volumes
	// report and the burned-in preview series, when the job wrote them.
	SRSeriesID      string `json:"sr_series_id,omitempty"`
	PreviewSeriesID string `json:"preview_series_id,omitempty"`
	// Volumes are the segments' volumes, as the SR reports them.
	Volumes []SegmentVolume `json:"volumes,omitempty"`
	// Instances is how many instances the series had in Orthanc when the
	// done job read it (0: not known, as for a result found in Orthanc). A
	// trigger that sees another count runs the job again.
	Instances int `json:"instances,omitempty"`
	// Timings holds stage durations in milliseconds.
	Timings map[string]float64 `json:"timings_ms,omitempty"`
	// Seq is the stream sequence of this generation's job message: the one
	// message allowed to run the job. Copies (a re-trigger after the
	// deduplication window) are dropped when delivered.
	Seq uint64 `json:"seq,omitempty"`
	// LeaseHash identifies the lease of the worker running the job (a hash
	// of the token only that worker holds); LeaseUntil is when the lease
	// lapses unless the worker reports progress or a heartbeat.
	LeaseHash  string     `json:"lease,omitempty"`
	LeaseUntil *time.Time `json:"lease_until,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

func (s *Status) String() string {
	return fmt.Sprintf("job %s generation %d %s", s.ID, s.Generation, s.State)
}

// leaseLive reports whether a running job's lease has not lapsed at now.
func (s *Status) leaseLive(now time.Time) bool {
	return s.State == StateRunning && s.LeaseUntil != nil && s.LeaseUntil.After(now)
}

// SegmentVolume is one segment's measured volume.
type SegmentVolume struct {
	// Segment is its number in the SEG, Name its label.
	Segment int    `json:"segment"`
	Name    string `json:"name"`
	Voxels  int    `json:"voxels"`
	// ML is Voxels times the voxel volume, in millilitres.
	ML float64 `json:"ml"`
}

// Result is what a worker reports when a job is done.
type Result struct {
	SEGSeriesID     string             `json:"seg_series_id"`
	SEGInstanceID   string             `json:"seg_instance_id"`
	SRSeriesID      string             `json:"sr_series_id,omitempty"`
	PreviewSeriesID string             `json:"preview_series_id,omitempty"`
	Volumes         []SegmentVolume    `json:"volumes,omitempty"`
	Timings         map[string]float64 `json:"timings_ms,omitempty"`
	// Instances is how many instances the series had when it was read.
	Instances int `json:"instances,omitempty"`
	// Found is true when the result was already in Orthanc and the model
	// did not run.
	Found bool `json:"found,omitempty"`
	// Warnings go into the job's status.
	Warnings []string `json:"warnings,omitempty"`
}
