package bridge

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

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
	modality := ev.Tags["Modality"]
	if reason := s.skipReason(modality); reason != "" {
		s.logger.Debug().Str("series", ev.SeriesID).Str("reason", reason).Msg("webhook event skipped")
		return c.JSON(http.StatusOK, map[string]string{"series_id": ev.SeriesID, "skipped": reason})
	}
	m, err := s.model(ev.Model)
	if err != nil {
		return err
	}
	if !m.applies(modality) {
		return c.JSON(http.StatusOK, map[string]string{"series_id": ev.SeriesID, "skipped": "model " + m.Name + " does not apply to modality " + modality})
	}
	st, created, err := s.queue.Enqueue(c.Request().Context(), queue.Job{
		SeriesID: ev.SeriesID, Model: m.Name, ModelVersion: m.Version, Trigger: "webhook",
	}, false)
	if err != nil {
		return err
	}
	s.logger.Info().Str("series", ev.SeriesID).Str("job", st.ID).Bool("new", created).Msg("webhook queued series")
	return c.JSON(http.StatusAccepted, s.view(st))
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
	m, err := s.model(c.QueryParam("model"))
	if err != nil {
		return err
	}
	ser, err := s.lookupSeries(c, id)
	if err != nil {
		return err
	}
	if strings.EqualFold(ser.Modality(), "SEG") {
		return echo.NewHTTPError(http.StatusUnprocessableEntity, "series "+id+" is itself a segmentation (SEG)")
	}
	if !m.applies(ser.Modality()) {
		return echo.NewHTTPError(http.StatusUnprocessableEntity, "model "+m.Name+" does not apply to modality "+ser.Modality())
	}
	st, created, err := s.queue.Enqueue(c.Request().Context(), queue.Job{
		SeriesID: id, Model: m.Name, ModelVersion: m.Version, Trigger: "manual",
	}, force)
	if err != nil {
		return err
	}
	code := http.StatusAccepted
	if st.State == queue.StateDone {
		code = http.StatusOK
	}
	s.logger.Info().Str("series", id).Str("job", st.ID).Bool("new", created).Msg("manual trigger")
	return c.JSON(code, s.view(st))
}

// SeriesView is the answer of GET /v1/series/{id}.
type SeriesView struct {
	SeriesID string `json:"series_id"`
	// State is the state of the default model's job, or "none" when the
	// series was never queued.
	State queue.State `json:"state"`
	Jobs  []JobView   `json:"jobs"`
}

func (s *Server) seriesStatus(c echo.Context) error {
	id, err := seriesParam(c)
	if err != nil {
		return err
	}
	sts, err := s.queue.SeriesStatus(c.Request().Context(), id)
	if err != nil {
		return err
	}
	if len(sts) == 0 {
		// Not queued: tell "unknown" from "known but never segmented".
		if _, err := s.lookupSeries(c, id); err != nil {
			return err
		}
	}
	out := SeriesView{SeriesID: id, State: "none", Jobs: []JobView{}}
	def := s.models[s.cfg.DefaultModel]
	defID := queue.JobID(id, def.Name, def.Version)
	for _, st := range sts {
		out.Jobs = append(out.Jobs, s.view(st))
		if st.ID == defID {
			out.State = st.State
		}
	}
	if out.State == "none" && len(sts) > 0 {
		out.State = sts[0].State
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
