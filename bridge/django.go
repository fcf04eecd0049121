package bridge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

// DjangoRequest is a job as the seed's Django paths show it
// (/api/mri/segmentation/...): its frontend keeps working unchanged.
type DjangoRequest struct {
	Success bool `json:"success"`
	// RequestID is the job id; GET /api/mri/segmentation/status/{request_id}/.
	RequestID string `json:"request_id"`
	// Status is pending, processing, completed, failed or cancelled.
	Status       string     `json:"status"`
	Message      string     `json:"message,omitempty"`
	SeriesID     string     `json:"series_id"`
	Model        string     `json:"model"`
	ModelVersion string     `json:"model_version"`
	SEGSeriesID  string     `json:"seg_series_id,omitempty"`
	SEGURL       string     `json:"seg_url,omitempty"`
	Stage        string     `json:"stage,omitempty"`
	Progress     float64    `json:"progress,omitempty"`
	Error        string     `json:"error,omitempty"`
	Attempts     int        `json:"attempts,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	CompletedAt  *time.Time `json:"completed_at,omitempty"`
	// TimingsMS are the stage durations of a completed job.
	TimingsMS map[string]float64 `json:"timings_ms,omitempty"`
}

func djangoStatus(st queue.State) string {
	switch st {
	case queue.StateQueued:
		return "pending"
	case queue.StateRunning:
		return "processing"
	case queue.StateDone:
		return "completed"
	}
	return string(st)
}

func (s *Server) django(v JobView) DjangoRequest {
	st := v.Status
	r := DjangoRequest{
		Success:      st.State != queue.StateFailed && st.State != queue.StateCancelled && st.State != queue.StateSkipped,
		RequestID:    st.ID,
		Status:       djangoStatus(st.State),
		SeriesID:     st.SeriesID,
		Model:        st.Model,
		ModelVersion: st.ModelVersion,
		SEGSeriesID:  st.SEGSeriesID,
		SEGURL:       v.SEGURL,
		Stage:        st.Stage,
		Progress:     st.Progress,
		Error:        st.Error,
		Attempts:     st.Attempts,
		CreatedAt:    st.RequestedAt,
		UpdatedAt:    st.UpdatedAt,
		CompletedAt:  st.FinishedAt,
		TimingsMS:    st.Timings,
	}
	switch st.State {
	case queue.StateDone:
		r.Message = "segmentation completed"
	case queue.StateFailed:
		r.Message = "segmentation failed: " + st.Error
	case queue.StateCancelled:
		r.Message = "segmentation was cancelled"
	case queue.StateSkipped:
		r.Message = "segmentation skipped: " + st.Error
	default:
		r.Message = "segmentation is " + r.Status + "; ask GET /api/mri/segmentation/status/" + st.ID + "/"
	}
	return r
}

// djangoSegment is POST /api/mri/segmentation/series/{series_id}/segment/:
// trigger, then wait up to DjangoWait for the job to end, as the seed's
// Django view did; 200 with the result, else 202 with the request_id.
// series_id is an Orthanc series id or a SeriesInstanceUID.
func (s *Server) djangoSegment(c echo.Context) error {
	id := c.Param("id")
	if !orthanc.ValidID(id) {
		if !isUID(id) {
			return echo.NewHTTPError(http.StatusNotFound, "no series "+strconv.Quote(id)+": give an Orthanc series id or a SeriesInstanceUID")
		}
		oid, err := s.orthanc.LookupSeries(c.Request().Context(), id)
		if errors.Is(err, orthanc.ErrNotFound) {
			return echo.NewHTTPError(http.StatusNotFound, "Orthanc has no series with SeriesInstanceUID "+id)
		}
		if err != nil {
			return echo.NewHTTPError(http.StatusBadGateway, "cannot look the series up in Orthanc: "+err.Error())
		}
		id = oid
	}
	force, _ := strconv.ParseBool(c.QueryParam("force"))
	admitted, err := s.triggerSeries(c, id, c.QueryParam("model"), force)
	if err != nil {
		return err
	}
	v := admitted.JobView
	if !v.State.Final() && s.cfg.DjangoWait > 0 {
		v = s.longPoll(c, v)
	}
	code := http.StatusOK
	switch v.State {
	case queue.StateQueued, queue.StateRunning:
		code = http.StatusAccepted
	case queue.StateFailed, queue.StateSkipped:
		code = http.StatusUnprocessableEntity
	case queue.StateCancelled:
		code = http.StatusConflict
	}
	return c.JSON(code, s.django(v))
}

// longPollMargin is added to DjangoWait for the connection's deadlines: time
// for the last status read and for writing the answer.
const longPollMargin = 30 * time.Second

// longPoll waits up to DjangoWait for the job to end, as the seed's Django
// view did, and returns the last status seen. It does not wait when
// MaxLongPolls requests already wait, so a crowd of browsers cannot hold an
// unbounded number of connections and status readers.
func (s *Server) longPoll(c echo.Context, v JobView) JobView {
	select {
	case s.longPolls <- struct{}{}:
		defer func() { <-s.longPolls }()
	default:
		s.logger.Debug().Str("job", v.ID).Int("max", s.cfg.MaxLongPolls).Msg("long-poll limit reached: answering at once")
		return v
	}
	// The server's WriteTimeout is shorter than the wait: the deadline is
	// moved for this request alone.
	if err := http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(s.cfg.DjangoWait + longPollMargin)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.logger.Warn().Err(err).Msg("long-poll: cannot extend the write deadline")
	}
	// net/http notices a client that goes away (and cancels the request's
	// context, ending the wait) only once the body has been read to its
	// end; the body means nothing here and is at most BodyLimit.
	_, _ = io.Copy(io.Discard, c.Request().Body)
	s.logger.Debug().Str("job", v.ID).Dur("wait", s.cfg.DjangoWait).Msg("long-poll waiting")
	return s.waitFinal(c.Request().Context(), v, s.cfg.DjangoWait)
}

// waitFinal polls the job's status until it ends, wait passes, the client
// goes away or the server stops; it returns the last status seen.
func (s *Server) waitFinal(ctx context.Context, v JobView, wait time.Duration) JobView {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return v
		case <-s.stopping:
			return v
		case <-t.C:
		}
		st, err := s.queue.Status(ctx, v.ID)
		if err != nil {
			continue
		}
		v = s.view(st)
		if st.State.Final() {
			return v
		}
	}
}

// djangoStatus is GET /api/mri/segmentation/status/{request_id}/.
func (s *Server) djangoStatus(c echo.Context) error {
	rid := c.Param("rid")
	st, err := s.queue.Status(c.Request().Context(), rid)
	if errors.Is(err, queue.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "no request "+strconv.Quote(rid))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.django(s.view(st)))
}

// djangoRequests is GET /api/mri/segmentation/requests/?status=&limit=.
func (s *Server) djangoRequests(c echo.Context) error {
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return echo.NewHTTPError(http.StatusBadRequest, "limit must be a number from 1 to 10000")
		}
		limit = n
	}
	var state queue.State
	switch c.QueryParam("status") {
	case "":
	case "pending":
		state = queue.StateQueued
	case "processing":
		state = queue.StateRunning
	case "completed":
		state = queue.StateDone
	case "failed":
		state = queue.StateFailed
	case "cancelled":
		state = queue.StateCancelled
	case "skipped":
		state = queue.StateSkipped
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "status must be one of pending, processing, completed, failed, skipped, cancelled")
	}
	sts, err := s.queue.List(c.Request().Context(), state, limit)
	if err != nil {
		return err
	}
	out := make([]DjangoRequest, 0, len(sts))
	for _, st := range sts {
		out = append(out, s.django(s.view(st)))
	}
	return c.JSON(http.StatusOK, map[string]any{"count": len(out), "requests": out})
}

// isUID reports whether s looks like a DICOM UID (digits and dots, at most 64).
func isUID(s string) bool {
	if s == "" || len(s) > 64 || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r == '.') {
			return false
		}
	}
	return true
}
