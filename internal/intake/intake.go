// Package intake is the one place that decides whether a series is queued,
// and for which model. The webhook, the manual trigger and the reconciler all
// call Admit, which applies the configured modalities (to automatic
// triggers) and each model's whole applies_to (modality, series description,
// body part), and says why it skips a series with a typed reason that the
// API, the log and the metrics all show.
package intake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

// Trigger is what asks for a series to be segmented.
type Trigger string

// The triggers.
const (
	// TriggerWebhook is Orthanc's stable-series event, posted by the Lua script.
	TriggerWebhook Trigger = "webhook"
	// TriggerManual is a person's request (the API, the seed's frontend).
	TriggerManual Trigger = "manual"
	// TriggerReconciler is the bridge's own sweep of Orthanc's changes.
	TriggerReconciler Trigger = "reconciler"
)

func (t Trigger) automatic() bool { return t != TriggerManual }

// SkipReason names why a series was not queued.
type SkipReason string

// The reasons a series is skipped.
const (
	// SkipSegmentation: the series is a segmentation (SEG), ours or not.
	SkipSegmentation SkipReason = "segmentation"
	// SkipNoModality: an automatic trigger for a series without Modality.
	SkipNoModality SkipReason = "no_modality"
	// SkipModality: an automatic trigger for a modality not configured
	// (SEGBRIDGE_MODALITIES).
	SkipModality SkipReason = "modality_not_configured"
	// SkipModelRules: no model's applies_to accepts the series (or the named
	// model's does not).
	SkipModelRules SkipReason = "model_does_not_apply"
	// SkipKnown: the reconciler found a series the queue already knows.
	SkipKnown SkipReason = "already_known"
)

// Reasons lists every SkipReason, for metrics that show zero counts too.
var Reasons = []SkipReason{SkipSegmentation, SkipNoModality, SkipModality, SkipModelRules, SkipKnown}

// Skip says why a series was not queued.
type Skip struct {
	Reason SkipReason
	// Detail says it in words for a person.
	Detail string
}

func (s *Skip) Error() string { return s.Detail }

// Series is a series as a trigger describes it: its Orthanc id and main
// DICOM tags (Modality, SeriesDescription, BodyPartExamined, ...), and, from
// the manual trigger, which reads the series from Orthanc, its instances.
type Series struct {
	ID   string
	Tags map[string]string
	// Instances are the series' instance ids in Orthanc, when known: the
	// manual trigger reads the first one's header for the rules that need
	// it.
	Instances []string
	// InstanceCount is how many instances the series has, when the trigger
	// knows it without the ids (the Lua event); 0 is not known.
	InstanceCount int
}

// count is how many instances the series has, or 0 when not known.
func (s Series) count() int {
	if s.InstanceCount > 0 {
		return s.InstanceCount
	}
	return len(s.Instances)
}

// Info is what the model rules look at.
func (s Series) Info() model.SeriesInfo {
	return model.SeriesInfo{
		Modality:          strings.TrimSpace(s.Tags["Modality"]),
		SeriesDescription: s.Tags["SeriesDescription"],
		BodyPartExamined:  s.Tags["BodyPartExamined"],
	}
}

// Request asks for a series to be segmented.
type Request struct {
	Series  Series
	Trigger Trigger
	// Model names the model; empty: the default model, or (automatic
	// triggers, no default) every model whose rules accept the series.
	Model string
	// Force (manual only) runs a model whose rules refuse the series, and
	// makes a new result even when Orthanc already has one.
	Force bool
}

// Admitted is one job a request led to.
type Admitted struct {
	Status *queue.Status
	// Created is true when this request queued a new generation.
	Created bool
	Model   *model.Model
}

// Outcome is what Admit did: the jobs, or why it skipped the series.
type Outcome struct {
	Jobs []Admitted
	Skip *Skip
}

// Errors of Admit that are the caller's mistake.
var (
	// ErrUnknownModel: the request names a model that is not installed.
	ErrUnknownModel = errors.New("unknown model")
	// ErrAmbiguous: a manual request names no model and several apply.
	ErrAmbiguous = errors.New("several models apply")
)

// jobQueue is what the intake needs of the queue.
type jobQueue interface {
	Enqueue(ctx context.Context, job queue.Job, force bool) (*queue.Status, bool, error)
	Status(ctx context.Context, id string) (*queue.Status, error)
	FoundInOrthanc(ctx context.Context, job queue.Job, res queue.Result) (*queue.Status, error)
}

// segFinder finds segbridge's result of a series in Orthanc.
type segFinder interface {
	FindSEG(ctx context.Context, sourceSeriesID, algorithm, version string) (*orthanc.SEGRef, error)
}

// Observer is told what the intake did, for metrics.
type Observer interface {
	Queued(trigger Trigger)
	Skipped(trigger Trigger, reason SkipReason)
}

var (
	_ jobQueue  = (*queue.Queue)(nil)
	_ segFinder = (*orthanc.Client)(nil)
)

// Config configures the intake.
type Config struct {
	// Models are the installed models. Required.
	Models []*model.Model
	// DefaultModel (SEGBRIDGE_MODEL) is used when a request names none.
	// Empty: automatic triggers queue every model whose rules accept the
	// series; a manual request takes the one that does, or must name one.
	DefaultModel string
	// Modalities are those automatic triggers may queue. Default MR.
	Modalities []string
}

// Intake admits series into the queue.
type Intake struct {
	cfg    Config
	logger zerolog.Logger
	queue  jobQueue
	finder segFinder
	obs    Observer
	models map[string]*model.Model
	// headers is finder's headerReader, when it has one.
	headers headerReader
}

// New builds the intake. obs may be nil.
func New(logger zerolog.Logger, q jobQueue, finder segFinder, obs Observer, cfg Config) (*Intake, error) {
	if len(cfg.Models) == 0 {
		return nil, errors.New("intake: no models")
	}
	if len(cfg.Modalities) == 0 {
		cfg.Modalities = []string{"MR"}
	}
	in := &Intake{cfg: cfg, logger: logger.With().Str("component", "intake").Logger(), queue: q, finder: finder, obs: obs,
		models: map[string]*model.Model{}}
	in.headers, _ = finder.(headerReader)
	for _, m := range cfg.Models {
		if _, dup := in.models[m.Name]; dup {
			return nil, fmt.Errorf("intake: model %q is installed twice", m.Name)
		}
		in.models[m.Name] = m
	}
	if cfg.DefaultModel != "" {
		if _, ok := in.models[cfg.DefaultModel]; !ok {
			return nil, fmt.Errorf("intake: default model %q (SEGBRIDGE_MODEL) is not among the installed models (%s)", cfg.DefaultModel, in.names())
		}
	}
	return in, nil
}

// Models returns the installed models, sorted by name.
func (in *Intake) Models() []*model.Model {
	out := slices.Clone(in.cfg.Models)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// DefaultModel is the model used when a request names none, or nil.
func (in *Intake) DefaultModel() *model.Model { return in.models[in.cfg.DefaultModel] }

func (in *Intake) names() string {
	var names []string
	for n := range in.models {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Model returns the installed model of that name.
func (in *Intake) Model(name string) (*model.Model, error) {
	m, ok := in.models[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (installed: %s)", ErrUnknownModel, name, in.names())
	}
	return m, nil
}

// Admit decides what to do with a series and queues its jobs. It never calls
// Orthanc for automatic triggers (the webhook answers while Orthanc waits on
// it). A manual request without Force is answered from Orthanc when it
// already holds segbridge's result of that model version.
func (in *Intake) Admit(ctx context.Context, req Request) (Outcome, error) {
	out, err := in.admit(ctx, req)
	if err != nil {
		return out, err
	}
	log := in.logger.With().Str("series", req.Series.ID).Str("trigger", string(req.Trigger)).Logger()
	if out.Skip != nil {
		if in.obs != nil {
			in.obs.Skipped(req.Trigger, out.Skip.Reason)
		}
		log.Debug().Str("reason", string(out.Skip.Reason)).Str("detail", out.Skip.Detail).Msg("series skipped")
		return out, nil
	}
	for _, j := range out.Jobs {
		if j.Created && in.obs != nil {
			in.obs.Queued(req.Trigger)
		}
		log.Info().Str("job", j.Status.ID).Str("state", string(j.Status.State)).Bool("new", j.Created).Msg("series admitted")
	}
	return out, nil
}

func (in *Intake) admit(ctx context.Context, req Request) (Outcome, error) {
	info := req.Series.Info()
	if strings.EqualFold(info.Modality, "SEG") {
		return skip(SkipSegmentation, "series %s is a segmentation (SEG)", req.Series.ID), nil
	}
	if req.Trigger.automatic() {
		switch {
		case info.Modality == "":
			return skip(SkipNoModality, "series %s has no Modality tag", req.Series.ID), nil
		case !slices.ContainsFunc(in.cfg.Modalities, func(m string) bool { return strings.EqualFold(m, info.Modality) }):
			return skip(SkipModality, "modality %s is not configured (SEGBRIDGE_MODALITIES=%s)", info.Modality, strings.Join(in.cfg.Modalities, ",")), nil
		}
	}
	if req.Trigger == TriggerManual && !req.Force && in.headers != nil && len(req.Series.Instances) > 0 && in.headerRules(req.Model) {
		tags, err := in.headers.InstanceTags(ctx, req.Series.Instances[0])
		if err != nil {
			return Outcome{}, fmt.Errorf("read the header of instance %s of series %s: %w", req.Series.Instances[0], req.Series.ID, err)
		}
		info = withHeader(info, tags, len(req.Series.Instances))
	}
	models, sk, err := in.choose(req, info)
	if err != nil || sk != nil {
		return Outcome{Skip: sk}, err
	}
	var out Outcome
	for _, m := range models {
		a, sk, err := in.admitModel(ctx, req, m)
		if err != nil {
			return out, err
		}
		if sk != nil {
			if len(models) == 1 {
				return Outcome{Skip: sk}, nil
			}
			continue
		}
		out.Jobs = append(out.Jobs, a)
	}
	if len(out.Jobs) == 0 {
		return skip(SkipKnown, "the queue already knows series %s for every model that applies", req.Series.ID), nil
	}
	return out, nil
}

// headerRules reports whether the model a request names (or the default
// one, or any installed one when neither is set) has rules that need the
// series' headers.
func (in *Intake) headerRules(name string) bool {
	if name == "" {
		name = in.cfg.DefaultModel
	}
	if m, ok := in.models[name]; ok {
		return m.AppliesTo.HasGeometryRules()
	}
	for _, m := range in.models {
		if m.AppliesTo.HasGeometryRules() {
			return true
		}
	}
	return false
}

// choose picks the models a request runs, after their rules.
func (in *Intake) choose(req Request, info model.SeriesInfo) ([]*model.Model, *Skip, error) {
	name := req.Model
	if name == "" {
		name = in.cfg.DefaultModel
	}
	if name != "" {
		m, err := in.Model(name)
		if err != nil {
			return nil, nil, err
		}
		if ok, why := m.Matches(info); !ok && !(req.Force && req.Trigger == TriggerManual) {
			return nil, &Skip{Reason: SkipModelRules, Detail: fmt.Sprintf("model %s does not apply to series %s: %s", m.Name, req.Series.ID, why)}, nil
		}
		return []*model.Model{m}, nil, nil
	}
	var match []*model.Model
	var why []string
	for _, m := range in.Models() {
		if ok, reason := m.Matches(info); ok {
			match = append(match, m)
		} else {
			why = append(why, m.Name+": "+reason)
		}
	}
	switch {
	case len(match) == 0 && req.Trigger == TriggerManual && req.Force && len(in.models) == 1:
		return in.Models(), nil, nil
	case len(match) == 0:
		return nil, &Skip{Reason: SkipModelRules, Detail: fmt.Sprintf("no model applies to series %s (%s)", req.Series.ID, strings.Join(why, "; "))}, nil
	case len(match) > 1 && req.Trigger == TriggerManual:
		var names []string
		for _, m := range match {
			names = append(names, m.Name)
		}
		return nil, nil, fmt.Errorf("%w to series %s (%s): name one with model=", ErrAmbiguous, req.Series.ID, strings.Join(names, ", "))
	}
	return match, nil, nil
}

// admitModel queues one model's job for the series, or says why not.
func (in *Intake) admitModel(ctx context.Context, req Request, m *model.Model) (Admitted, *Skip, error) {
	job := queue.Job{SeriesID: req.Series.ID, Model: m.Name, ModelVersion: m.Version, Trigger: string(req.Trigger)}
	job.ID = queue.JobID(job.SeriesID, job.Model, job.ModelVersion)
	force := req.Force && req.Trigger == TriggerManual
	if n := req.Series.count(); n > 0 && !force && req.Trigger != TriggerReconciler {
		// A series that gained or lost instances since its job was done (the
		// rest of it arrived after Orthanc had called it stable, or slices
		// were deleted) is segmented again: the old SEG covers another
		// series than the one Orthanc now holds.
		cur, err := in.queue.Status(ctx, job.ID)
		if err == nil && cur.State == queue.StateDone && cur.Instances > 0 && cur.Instances != n {
			job.Changed = true
			in.logger.Info().Str("series", req.Series.ID).Str("job", job.ID).Int("instances_then", cur.Instances).
				Int("instances_now", n).Msg("the series changed since its job was done; segmenting it again")
		}
	}
	if !job.Changed && (req.Trigger == TriggerReconciler || req.Trigger == TriggerManual && !force) {
		cur, err := in.queue.Status(ctx, job.ID)
		switch {
		case err == nil && req.Trigger == TriggerReconciler:
			// The reconciler queues only what the queue has never seen: a
			// job that failed or was cancelled stays so until someone asks.
			return Admitted{}, &Skip{Reason: SkipKnown, Detail: fmt.Sprintf("job %s is already known (%s)", job.ID, cur.State)}, nil
		case err == nil && (cur.State == queue.StateQueued || cur.State == queue.StateRunning || cur.State == queue.StateDone):
			return Admitted{Status: cur, Model: m}, nil, nil
		case err != nil && !errors.Is(err, queue.ErrNotFound) && !errors.Is(err, queue.ErrCorrupt):
			return Admitted{}, nil, err
		}
	}
	if req.Trigger == TriggerManual && !force && !job.Changed && in.finder != nil {
		ref, err := in.finder.FindSEG(ctx, req.Series.ID, m.Name, m.Version)
		if err != nil {
			return Admitted{}, nil, fmt.Errorf("look for the SEG in Orthanc: %w", err)
		}
		if ref != nil {
			st, err := in.queue.FoundInOrthanc(ctx, job, queue.Result{SEGSeriesID: ref.SeriesID, SEGInstanceID: ref.InstanceID, Found: true})
			if errors.Is(err, queue.ErrLive) {
				return Admitted{Status: st, Model: m}, nil, nil
			}
			if err != nil {
				return Admitted{}, nil, err
			}
			return Admitted{Status: st, Model: m}, nil, nil
		}
	}
	st, created, err := in.queue.Enqueue(ctx, job, force)
	if err != nil {
		return Admitted{}, nil, err
	}
	return Admitted{Status: st, Created: created, Model: m}, nil, nil
}

func skip(reason SkipReason, format string, args ...any) Outcome {
	return Outcome{Skip: &Skip{Reason: reason, Detail: fmt.Sprintf(format, args...)}}
}
