package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/segbridge/segbridge/internal/intake"
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
	// Instances is how many instances the series has now (0: not sent):
	// a series done with another count is segmented again.
	Instances int `json:"-"`
	// RawInstances is the count as sent: Orthanc's Lua writes numbers as
	// JSON numbers, possibly with a fraction (Lua 5.1 numbers are doubles),
	// or as strings.
	RawInstances json.RawMessage `json:"instances,omitempty"`
}

// maxEventInstances bounds the instance count an event may claim.
const maxEventInstances = 10_000_000

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
	if len(ev.RawInstances) > 0 {
		raw := strings.Trim(string(ev.RawInstances), `"`)
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil || n < 0 || n > maxEventInstances || n != math.Trunc(n) {
			return nil, fmt.Errorf("instances is %.40s, not a count of 0..%d", ev.RawInstances, maxEventInstances)
		}
		ev.Instances = int(n)
	}
	return &ev, nil
}

// JobView is a job as the API shows it.
type JobView struct {
	*queue.Status
	// SEGURL is the Orthanc Explorer page of the SEG series, once done;
	// SRURL and PreviewURL those of the volumes report and the preview
	// series, when the job wrote them.
	SEGURL     string `json:"seg_url,omitempty"`
	SRURL      string `json:"sr_url,omitempty"`
	PreviewURL string `json:"preview_url,omitempty"`
}

func (s *Server) view(st *queue.Status) JobView {
	v := JobView{Status: st}
	if st.SEGSeriesID != "" {
		v.SEGURL = orthanc.ExplorerURL(s.cfg.OrthancPublicURL, st.SEGSeriesID)
	}
	if st.SRSeriesID != "" {
		v.SRURL = orthanc.ExplorerURL(s.cfg.OrthancPublicURL, st.SRSeriesID)
	}
	if st.PreviewSeriesID != "" {
		v.PreviewURL = orthanc.ExplorerURL(s.cfg.OrthancPublicURL, st.PreviewSeriesID)
	}
	return v
}

// JobJSON is a job as GET /v1/jobs/{id} answers it: the body of the
// notifications to SEGBRIDGE_NOTIFY_URL.
func (s *Server) JobJSON(st *queue.Status) ([]byte, error) { return json.Marshal(s.view(st)) }

// skipView is the answer for a series that was not queued.
type skipView struct {
	SeriesID string `json:"series_id"`
	// Skipped says why in words; Reason is its code (intake.SkipReason).
	Skipped string `json:"skipped"`
	Reason  string `json:"reason"`
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
	out, err := s.intake.Admit(c.Request().Context(), intake.Request{
		Series:  intake.Series{ID: ev.SeriesID, Tags: ev.Tags, InstanceCount: ev.Instances},
		Trigger: intake.TriggerWebhook,
		Model:   ev.Model,
	})
	if err != nil {
		return admitError(err)
	}
	if out.Skip != nil {
		return c.JSON(http.StatusOK, skipView{SeriesID: ev.SeriesID, Skipped: out.Skip.Detail, Reason: string(out.Skip.Reason)})
	}
	return c.JSON(http.StatusAccepted, s.admittedView(out))
}

// admittedView is the first job of an outcome, with all of them when a
// series led to several.
type admittedJobs struct {
	JobView
	Jobs []JobView `json:"jobs,omitempty"`
}

func (s *Server) admittedView(out intake.Outcome) admittedJobs {
	v := admittedJobs{JobView: s.view(out.Jobs[0].Status)}
	if len(out.Jobs) > 1 {
		for _, j := range out.Jobs {
			v.Jobs = append(v.Jobs, s.view(j.Status))
		}
	}
	return v
}

// admitError turns the intake's errors into HTTP answers.
func admitError(err error) error {
	switch {
	case errors.Is(err, intake.ErrUnknownModel), errors.Is(err, intake.ErrAmbiguous):
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	case errors.Is(err, orthanc.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, err.Error())
	}
	var he *orthanc.HTTPError
	if errors.As(err, &he) {
		return echo.NewHTTPError(http.StatusBadGateway, err.Error())
	}
	return err
}

// QueueStable is the reconciler's way in: the same intake as the webhook.
// It returns whether a job was queued, or why the series was skipped.
func (s *Server) QueueStable(ctx context.Context, seriesID string, tags map[string]string) (queued bool, skipped string, err error) {
	out, err := s.intake.Admit(ctx, intake.Request{
		Series:  intake.Series{ID: seriesID, Tags: tags},
		Trigger: intake.TriggerReconciler,
	})
	if err != nil {
		return false, "", err
	}
	if out.Skip != nil {
		return false, string(out.Skip.Reason), nil
	}
	for _, j := range out.Jobs {
		if j.Created {
			return true, "", nil
		}
	}
	return false, string(intake.SkipKnown), nil
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
	v, err := s.triggerSeries(c, id, c.QueryParam("model"), force)
	if err != nil {
		return err
	}
	code := http.StatusAccepted
	if v.State == queue.StateDone {
		code = http.StatusOK
	}
	return c.JSON(code, v)
}

// triggerSeries is the manual trigger: read the series from Orthanc and hand
// it to the intake, which answers done when Orthanc already has the SEG by
// that model version (unless force), queues it, or says why it will not
// (422: a SEG, or a model whose rules refuse the series without force).
func (s *Server) triggerSeries(c echo.Context, id, modelName string, force bool) (admittedJobs, error) {
	ser, err := s.lookupSeries(c, id)
	if err != nil {
		return admittedJobs{}, err
	}
	out, err := s.intake.Admit(c.Request().Context(), intake.Request{
		Series:  intake.Series{ID: id, Tags: ser.MainDicomTags, Instances: ser.Instances},
		Trigger: intake.TriggerManual,
		Model:   modelName,
		Force:   force,
	})
	if err != nil {
		return admittedJobs{}, admitError(err)
	}
	if out.Skip != nil {
		msg := out.Skip.Detail
		if out.Skip.Reason == intake.SkipModelRules {
			msg += " (add force=true to run it anyway)"
		}
		return admittedJobs{}, echo.NewHTTPError(http.StatusUnprocessableEntity, msg)
	}
	return s.admittedView(out), nil
}

// SeriesView is the answer of GET /v1/series/{id}.
type SeriesView struct {
	SeriesID string `json:"series_id"`
	// State is the state of the default model's job (or the first job's),
	// or "none" when the series was never queued.
	State queue.State `json:"state"`
	Jobs  []JobView   `json:"jobs"`
	// Warning says what could not be checked (e.g. Orthanc unreachable).
	Warning string `json:"warning,omitempty"`
}

// seriesStatus answers GET /v1/series/{id}. It writes nothing: a job the
// queue does not know as queued, running or done but whose SEG Orthanc holds
// is shown done, with source "orthanc", without being recorded.
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
	var tags map[string]string
	if ser != nil {
		tags = ser.MainDicomTags
	}
	var warn string
	out.Jobs, out.State, warn = s.seriesJobs(ctx, id, ser != nil, tags, sts)
	if warn != "" {
		out.Warning = warn
	}
	return c.JSON(http.StatusOK, out)
}

// seriesJobs merges the queue's jobs of a series with Orthanc's record: a
// job the queue does not know as queued, running or done, whose SEG by that
// model version Orthanc holds, is shown done with source "orthanc" (nothing
// is written). inOrthanc says Orthanc has the series, with main tags tags.
// state is the default model's job's state, else the first job's, else
// "none"; warning says what could not be checked.
func (s *Server) seriesJobs(ctx context.Context, id string, inOrthanc bool, tags map[string]string, sts []*queue.Status) (jobs []JobView, state queue.State, warning string) {
	jobs, state = []JobView{}, "none"
	byID := map[string]int{}
	for _, st := range sts {
		byID[st.ID] = len(jobs)
		jobs = append(jobs, s.view(st))
	}
	if inOrthanc && !strings.EqualFold(tags["Modality"], "SEG") {
		info := intake.Series{ID: id, Tags: tags}.Info()
		for _, m := range s.intake.Models() {
			jid := queue.JobID(id, m.Name, m.Version)
			i, known := byID[jid]
			if known && (jobs[i].State == queue.StateQueued || jobs[i].State == queue.StateRunning || jobs[i].State == queue.StateDone) {
				continue
			}
			if ok, _ := m.Matches(info); !ok && !known {
				continue
			}
			ref, err := s.orthanc.FindSEG(ctx, id, m.Name, m.Version)
			if err != nil {
				warning = "cannot look for SEGs in Orthanc: " + err.Error()
				break
			}
			if ref == nil {
				continue
			}
			st := &queue.Status{State: queue.StateDone, Progress: 1, Source: "orthanc", SEGSeriesID: ref.SeriesID, SEGInstanceID: ref.InstanceID}
			if known {
				cp := *jobs[i].Status
				cp.State, cp.Progress, cp.Source, cp.Error = queue.StateDone, 1, "orthanc", ""
				cp.SEGSeriesID, cp.SEGInstanceID = ref.SeriesID, ref.InstanceID
				jobs[i] = s.view(&cp)
				continue
			}
			st.Job = queue.Job{ID: jid, SeriesID: id, Model: m.Name, ModelVersion: m.Version, Trigger: "orthanc"}
			jobs = append(jobs, s.view(st))
		}
	}
	def := s.intake.DefaultModel()
	for _, j := range jobs {
		if def != nil && j.ID == queue.JobID(id, def.Name, def.Version) {
			state = j.State
		}
	}
	if state == "none" && len(jobs) > 0 {
		state = jobs[0].State
	}
	return jobs, state, warning
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
	if state != "" && !state.Valid() {
		names := make([]string, len(queue.States))
		for i, st := range queue.States {
			names[i] = string(st)
		}
		return echo.NewHTTPError(http.StatusBadRequest, "state must be one of "+strings.Join(names, ", "))
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
	if errors.Is(err, queue.ErrCorrupt) {
		return echo.NewHTTPError(http.StatusInternalServerError, fmt.Sprintf("the status record of job %q is unreadable; trigger the series again to replace it", c.Param("id")))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.view(st))
}

// cancelJob is DELETE /v1/jobs/{id}: a queued or running job is cancelled
// (a running one's worker stops at its next heartbeat, or, when that worker
// is gone, its message is dropped when next delivered).
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
