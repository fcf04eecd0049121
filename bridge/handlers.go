package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

// WebhookEvent is the body the Lua script posts for a stable series.
type WebhookEvent struct {
	// Event is "StableSeries".
	Event string `json:"event"`
	// SeriesID is the Orthanc id of the series.
	SeriesID string `json:"series_id"`
	// Tags are the series' main DICOM tags as Orthanc gave them to Lua.
	Tags map[string]string `json:"tags"`
	// Model optionally names the model to run.
	Model string `json:"model,omitempty"`
}

// ParseWebhookEvent decodes and checks a webhook body.
func ParseWebhookEvent(body []byte) (*WebhookEvent, error) {
	var ev WebhookEvent
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&ev); err != nil {
		return nil, errors.New("body is not a JSON webhook event: " + err.Error())
	}
	if dec.More() {
		return nil, errors.New("body has data after the JSON event")
	}
	if !orthanc.ValidID(ev.SeriesID) {
		return nil, errors.New("series_id is not an Orthanc series id")
	}
	return &ev, nil
}

// JobView is a job as the API shows it.
type JobView struct {
	*queue.Status
	// SEGURL is the Orthanc Explorer page of the SEG series, once done.
	SEGURL string `json:"seg_url,omitempty"`
	// Source is "orthanc" when the job was found done in Orthanc (a SEG by
	// this model version) rather than in the queue's records.
	Source string `json:"source,omitempty"`
}

func (s *Server) view(st *queue.Status) JobView {
	v := JobView{Status: st}
	if st.SEGSeriesID != "" {
		v.SEGURL = orthanc.ExplorerURL(s.cfg.OrthancPublicURL, st.SEGSeriesID)
	}
	return v
}

func (s *Server) webhook(c echo.Context) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "read body: "+err.Error())
	}
	ev, err := ParseWebhookEvent(body)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	st, skipped, err := s.queueStable(c.Request().Context(), ev.SeriesID, ev.Tags, ev.Model, "webhook")
	if err != nil {
		return err
	}
	if skipped != "" {
		s.logger.Debug().Str("series", ev.SeriesID).Str("reason", skipped).Msg("webhook event skipped")
		return c.JSON(http.StatusOK, map[string]string{"series_id": ev.SeriesID, "skipped": skipped})
	}
	return c.JSON(http.StatusAccepted, s.view(st))
}

// queueStable queues a stable series reported by Orthanc (webhook or
// reconciler) after the filters: configured modalities, never SEG, a model
// that applies. It never calls Orthanc. It returns why it skipped the
// series, or the job.
func (s *Server) queueStable(ctx context.Context, seriesID string, tags map[string]string, modelName, trigger string) (*queue.Status, string, error) {
	modality := tags["Modality"]
	if reason := s.skipReason(modality); reason != "" {
		return nil, reason, nil
	}
	m, err := s.model(modelName)
	if err != nil {
		return nil, "", err
	}
	if !m.applies(modality) {
		return nil, "model " + m.Name + " does not apply to modality " + modality, nil
	}
	job := queue.Job{SeriesID: seriesID, Model: m.Name, ModelVersion: m.Version, Trigger: trigger}
	if trigger == "reconciler" {
		// The reconciler queues only what the queue has never seen: a job
		// that failed or was cancelled stays so until someone asks again.
		cur, err := s.queue.Status(ctx, queue.JobID(seriesID, m.Name, m.Version))
		if err == nil {
			return cur, "already known to the queue (" + string(cur.State) + ")", nil
		}
		if !errors.Is(err, queue.ErrNotFound) {
			return nil, "", err
		}
	}
	st, created, err := s.queue.Enqueue(ctx, job, false)
	if err != nil {
		return nil, "", err
	}
	if created {
		s.metrics.countQueued(trigger)
	}
	s.logger.Info().Str("series", seriesID).Str("job", st.ID).Str("trigger", trigger).Bool("new", created).Msg("queued stable series")
	return st, "", nil
}

// QueueStable is the reconciler's way in: the same filters and queueing as
// the webhook.
func (s *Server) QueueStable(ctx context.Context, seriesID string, tags map[string]string) error {
	_, _, err := s.queueStable(ctx, seriesID, tags, "", "reconciler")
	return err
}

// skipReason says why a webhook event for this modality starts no job.
func (s *Server) skipReason(modality string) string {
	if strings.EqualFold(modality, "SEG") {
		return "series is a segmentation (SEG)"
	}
	for _, m := range s.cfg.Modalities {
		if strings.EqualFold(m, modality) {
			return ""
		}
	}
	if modality == "" {
		return "event has no Modality tag"
	}
	return "modality " + modality + " is not configured (SEGBRIDGE_MODALITIES=" + strings.Join(s.cfg.Modalities, ",") + ")"
}

func (s *Server) model(name string) (Model, error) {
	if name == "" {
		name = s.cfg.DefaultModel
	}
	m, ok := s.models[name]
	if !ok {
		names := make([]string, 0, len(s.models))
		for n := range s.models {
			names = append(names, n)
		}
		return Model{}, echo.NewHTTPError(http.StatusBadRequest, "unknown model "+strconv.Quote(name)+" (have: "+strings.Join(names, ", ")+")")
	}
	return m, nil
}

func seriesParam(c echo.Context) (string, error) {
	id := c.Param("id")
	if !orthanc.ValidID(id) {
		return "", echo.NewHTTPError(http.StatusNotFound, "no series "+strconv.Quote(id)+": an Orthanc series id is 5 groups of 8 hex digits")
	}
	return id, nil
}

// lookupSeries reads a series from Orthanc, turning its absence into a 404.
func (s *Server) lookupSeries(c echo.Context, id string) (*orthanc.Series, error) {
	ser, err := s.orthanc.Series(c.Request().Context(), id)
	if errors.Is(err, orthanc.ErrNotFound) {
		return nil, echo.NewHTTPError(http.StatusNotFound, "Orthanc has no series "+id)
	}
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusBadGateway, "cannot read series from Orthanc: "+err.Error())
	}
	return ser, nil
}

func (s *Server) trigger(c echo.Context) error {
	id, err := seriesParam(c)
	if err != nil {
		return err
	}
	force, _ := strconv.ParseBool(c.QueryParam("force"))
	v, err := s.triggerSeries(c, id, c.QueryParam("model"), force, "manual")
	if err != nil {
		return err
	}
	code := http.StatusAccepted
	if v.State == queue.StateDone {
		code = http.StatusOK
	}
	return c.JSON(code, v)
}

// triggerSeries is the manual trigger: check the series in Orthanc, answer
// done when Orthanc already has its SEG by this model version (unless
// force), else queue it (or join the job already queued).
func (s *Server) triggerSeries(c echo.Context, id, modelName string, force bool, trigger string) (JobView, error) {
	ctx := c.Request().Context()
	m, err := s.model(modelName)
	if err != nil {
		return JobView{}, err
	}
	ser, err := s.lookupSeries(c, id)
	if err != nil {
		return JobView{}, err
	}
	if strings.EqualFold(ser.Modality(), "SEG") {
		return JobView{}, echo.NewHTTPError(http.StatusUnprocessableEntity, "series "+id+" is itself a segmentation (SEG)")
	}
	if !m.applies(ser.Modality()) {
		return JobView{}, echo.NewHTTPError(http.StatusUnprocessableEntity, "model "+m.Name+" does not apply to modality "+ser.Modality())
	}
	job := queue.Job{SeriesID: id, Model: m.Name, ModelVersion: m.Version, Trigger: trigger}
	if !force {
		if v, ok, err := s.doneInOrthanc(ctx, job); err != nil {
			return JobView{}, err
		} else if ok {
			s.logger.Info().Str("series", id).Str("seg_series", v.SEGSeriesID).Msg("trigger: Orthanc already has the SEG")
			return v, nil
		}
	}
	st, created, err := s.queue.Enqueue(ctx, job, force)
	if err != nil {
		return JobView{}, err
	}
	if created {
		s.metrics.countQueued(trigger)
	}
	s.logger.Info().Str("series", id).Str("job", st.ID).Bool("new", created).Str("trigger", trigger).Msg("manual trigger")
	return s.view(st), nil
}

// doneInOrthanc answers a job as done when the queue does not know it as
// queued, running or done but Orthanc has a SEG of the series by this model
// version (the bridge's data was lost, or another bridge made it). It
// records that in the status bucket, so status and job lists agree.
func (s *Server) doneInOrthanc(ctx context.Context, job queue.Job) (JobView, bool, error) {
	id := queue.JobID(job.SeriesID, job.Model, job.ModelVersion)
	cur, err := s.queue.Status(ctx, id)
	if err != nil && !errors.Is(err, queue.ErrNotFound) {
		return JobView{}, false, err
	}
	if cur != nil && (cur.State == queue.StateQueued || cur.State == queue.StateRunning || cur.State == queue.StateDone) {
		return JobView{}, false, nil
	}
	ref, err := s.orthanc.FindSEG(ctx, job.SeriesID, job.Model, job.ModelVersion)
	if err != nil {
		return JobView{}, false, echo.NewHTTPError(http.StatusBadGateway, "cannot look for the SEG in Orthanc: "+err.Error())
	}
	if ref == nil {
		return JobView{}, false, nil
	}
	st, err := s.queue.Update(ctx, id, func(st *queue.Status) error {
		if st.State == queue.StateQueued || st.State == queue.StateRunning {
			return errLive
		}
		gen := st.Generation
		st.Job = job
		st.ID, st.Generation, st.Trigger = id, gen, "orthanc"
		if st.RequestedAt.IsZero() {
			st.RequestedAt = time.Now().UTC()
		}
		st.State, st.Stage, st.Progress, st.Error = queue.StateDone, "", 1, ""
		st.SEGSeriesID, st.SEGInstanceID = ref.SeriesID, ref.InstanceID
		now := time.Now().UTC()
		st.FinishedAt = &now
		return nil
	})
	if errors.Is(err, errLive) {
		return JobView{}, false, nil
	}
	if err != nil {
		return JobView{}, false, err
	}
	v := s.view(st)
	v.Source = "orthanc"
	return v, true, nil
}

var errLive = errors.New("job is queued or running")

// SeriesView is the answer of GET /v1/series/{id}.
type SeriesView struct {
	SeriesID string `json:"series_id"`
	// State is the state of the default model's job, or "none" when the
	// series was never queued.
	State queue.State `json:"state"`
	Jobs  []JobView   `json:"jobs"`
	// Warning says what could not be checked (e.g. Orthanc unreachable).
	Warning string `json:"warning,omitempty"`
}

func (s *Server) seriesStatus(c echo.Context) error {
	id, err := seriesParam(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	sts, err := s.queue.SeriesStatus(ctx, id)
	if err != nil {
		return err
	}
	out := SeriesView{SeriesID: id, State: "none", Jobs: []JobView{}}
	// Orthanc is the record: a series it does not have is a 404 unless the
	// queue knows it, and a SEG in Orthanc makes a job done.
	ser, oerr := s.orthanc.Series(ctx, id)
	switch {
	case oerr == nil:
	case errors.Is(oerr, orthanc.ErrNotFound) && len(sts) == 0:
		return echo.NewHTTPError(http.StatusNotFound, "Orthanc has no series "+id)
	case len(sts) == 0:
		return echo.NewHTTPError(http.StatusBadGateway, "cannot read series from Orthanc: "+oerr.Error())
	default:
		out.Warning = "cannot read series from Orthanc: " + oerr.Error()
	}
	byID := map[string]bool{}
	for _, st := range sts {
		byID[st.ID] = true
		out.Jobs = append(out.Jobs, s.view(st))
	}
	if ser != nil && !strings.EqualFold(ser.Modality(), "SEG") {
		for _, m := range s.cfg.Models {
			if !m.applies(ser.Modality()) {
				continue
			}
			job := queue.Job{SeriesID: id, Model: m.Name, ModelVersion: m.Version, Trigger: "orthanc"}
			v, ok, err := s.doneInOrthanc(ctx, job)
			if err != nil {
				out.Warning = "cannot look for SEGs in Orthanc: " + fmt.Sprint(err)
				break
			}
			if !ok {
				continue
			}
			if byID[v.ID] {
				for i := range out.Jobs {
					if out.Jobs[i].ID == v.ID {
						out.Jobs[i] = v
					}
				}
			} else {
				out.Jobs = append(out.Jobs, v)
			}
		}
	}
	def := s.models[s.cfg.DefaultModel]
	defID := queue.JobID(id, def.Name, def.Version)
	for _, j := range out.Jobs {
		if j.ID == defID {
			out.State = j.State
		}
	}
	if out.State == "none" && len(out.Jobs) > 0 {
		out.State = out.Jobs[0].State
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) listJobs(c echo.Context) error {
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return echo.NewHTTPError(http.StatusBadRequest, "limit must be a number from 1 to 10000")
		}
		limit = n
	}
	state := queue.State(c.QueryParam("state"))
	switch state {
	case "", queue.StateQueued, queue.StateRunning, queue.StateDone, queue.StateFailed, queue.StateCancelled:
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "state must be one of queued, running, done, failed, cancelled")
	}
	sts, err := s.queue.List(c.Request().Context(), state, limit)
	if err != nil {
		return err
	}
	out := make([]JobView, 0, len(sts))
	for _, st := range sts {
		out = append(out, s.view(st))
	}
	return c.JSON(http.StatusOK, map[string]any{"jobs": out})
}

func (s *Server) getJob(c echo.Context) error {
	st, err := s.queue.Status(c.Request().Context(), c.Param("id"))
	if errors.Is(err, queue.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "no job "+strconv.Quote(c.Param("id")))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.view(st))
}

func (s *Server) cancelJob(c echo.Context) error {
	st, err := s.queue.Cancel(c.Request().Context(), c.Param("id"))
	switch {
	case errors.Is(err, queue.ErrNotCancellable):
		return echo.NewHTTPError(http.StatusConflict, err.Error())
	case errors.Is(err, queue.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "no job "+strconv.Quote(c.Param("id")))
	case err != nil:
		return err
	}
	return c.JSON(http.StatusOK, s.view(st))
}
