package bridge

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/intake"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
	"github.com/segbridge/segbridge/internal/resultview"
)

// The status page is plain HTML, CSS and JavaScript served from the binary:
// no build step, nothing fetched from elsewhere. The page itself holds no
// data; everything it shows comes from the /v1 API with the same token rules,
// so with an API token it asks for the token once (kept for the browser tab).
//
//go:embed ui
var uiFiles embed.FS

// ResultRenderer makes what the page shows of a done job
// (resultview.Renderer).
type ResultRenderer interface {
	Render(ctx context.Context, sourceSeriesID, segInstanceID string) (*resultview.Result, error)
}

var _ ResultRenderer = (*resultview.Renderer)(nil)

// pageSecurityHeaders keep the page to its own origin: its script and
// styles from the binary, its data from the API, its images from the API's
// PNG (as blob: URLs); nothing may frame it.
func pageSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// pageRoutes serves the page at / and its files under /ui/.
func (s *Server) pageRoutes(e *echo.Echo) {
	static, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic("bridge: embedded ui folder: " + err.Error()) // a build without the folder cannot compile
	}
	files := http.FileServerFS(static)
	e.GET("/", func(c echo.Context) error {
		pageSecurityHeaders(c.Response().Header())
		b, err := fs.ReadFile(static, "index.html")
		if err != nil {
			return err
		}
		return c.HTMLBlob(http.StatusOK, b)
	})
	e.GET("/ui/*", func(c echo.Context) error {
		pageSecurityHeaders(c.Response().Header())
		req := c.Request().Clone(c.Request().Context())
		req.URL.Path = "/" + c.Param("*")
		files.ServeHTTP(c.Response(), req)
		return nil
	})
}

// PageSeries is one series in the page's list: what Orthanc says of it, its
// jobs as GET /v1/series/{id} shows them, and the models that apply to it.
type PageSeries struct {
	orthanc.SeriesSummary
	ExplorerURL string      `json:"explorer_url"`
	State       queue.State `json:"state"`
	Jobs        []JobView   `json:"jobs"`
	Models      []string    `json:"models"`
	Warning     string      `json:"warning,omitempty"`
}

// PageModel is a model the page can offer.
type PageModel struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
}

// pageScan is how many of the series Orthanc received last the list reads.
const pageScan = 200

// pageSeries is GET /v1/page/series?limit=: the series Orthanc received last
// in the modalities the models apply to, newest first, with their jobs.
func (s *Server) pageSeries(c echo.Context) error {
	limit := 50
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			return echo.NewHTTPError(http.StatusBadRequest, "limit must be a number from 1 to 200")
		}
		limit = n
	}
	ctx := c.Request().Context()
	models := s.intake.Models()
	keep := func(modality string) bool {
		if strings.EqualFold(modality, "SEG") {
			return false
		}
		for _, m := range models {
			if m.Applies(modality) {
				return true
			}
		}
		return false
	}
	recent, err := s.orthanc.RecentSeries(ctx, pageScan, limit, keep)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadGateway, "cannot list series in Orthanc: "+err.Error())
	}
	out := struct {
		Series       []PageSeries `json:"series"`
		Models       []PageModel  `json:"models"`
		DefaultModel string       `json:"default_model,omitempty"`
		// Previews says whether this bridge renders result previews.
		Previews bool `json:"previews"`
	}{Series: []PageSeries{}, Previews: s.cfg.Results != nil}
	for _, m := range models {
		out.Models = append(out.Models, PageModel{Name: m.Name, Version: m.Version, Description: m.Description})
	}
	if d := s.intake.DefaultModel(); d != nil {
		out.DefaultModel = d.Name
	}
	for _, sum := range recent {
		sts, err := s.queue.SeriesStatus(ctx, sum.ID)
		if err != nil {
			return err
		}
		ps := PageSeries{SeriesSummary: sum, ExplorerURL: orthanc.ExplorerURL(s.cfg.OrthancPublicURL, sum.ID), Models: []string{}}
		ps.Jobs, ps.State, ps.Warning = s.seriesJobs(ctx, sum.ID, true, sum.MainDicomTags, sts)
		info := intake.Series{ID: sum.ID, Tags: sum.MainDicomTags}.Info()
		for _, m := range models {
			if ok, _ := m.Matches(info); ok {
				ps.Models = append(ps.Models, m.Name)
			}
		}
		out.Series = append(out.Series, ps)
	}
	return c.JSON(http.StatusOK, out)
}

// doneResult finds the SEG of a done job: from its status, or, for a job the
// queue does not know as done (its state lost, or run elsewhere), from
// Orthanc by the model version the job id names.
func (s *Server) doneResult(ctx context.Context, jobID string) (seriesID, segInstanceID string, err error) {
	st, err := s.queue.Status(ctx, jobID)
	switch {
	case err == nil && st.State == queue.StateDone && st.SEGInstanceID != "":
		return st.SeriesID, st.SEGInstanceID, nil
	case err == nil && (st.State == queue.StateQueued || st.State == queue.StateRunning):
		return "", "", echo.NewHTTPError(http.StatusConflict, "job "+jobID+" is "+string(st.State)+": its result is not there yet")
	case err != nil && !errors.Is(err, queue.ErrNotFound) && !errors.Is(err, queue.ErrCorrupt):
		return "", "", err
	}
	series, _, _ := strings.Cut(jobID, ".")
	if !orthanc.ValidID(series) {
		return "", "", echo.NewHTTPError(http.StatusNotFound, "no job "+strconv.Quote(jobID))
	}
	for _, m := range s.intake.Models() {
		if queue.JobID(series, m.Name, m.Version) != jobID {
			continue
		}
		ref, err := s.orthanc.FindSEG(ctx, series, m.Name, m.Version)
		if err != nil {
			return "", "", echo.NewHTTPError(http.StatusBadGateway, "cannot look for the SEG in Orthanc: "+err.Error())
		}
		if ref != nil {
			return series, ref.InstanceID, nil
		}
	}
	return "", "", echo.NewHTTPError(http.StatusNotFound, "job "+jobID+" has no result in Orthanc")
}

// render makes a done job's result, turning what went wrong into answers.
func (s *Server) render(c echo.Context) (*resultview.Result, error) {
	if s.cfg.Results == nil {
		return nil, echo.NewHTTPError(http.StatusNotImplemented, "this bridge does not render results")
	}
	ctx := c.Request().Context()
	series, seg, err := s.doneResult(ctx, c.Param("id"))
	if err != nil {
		return nil, err
	}
	res, err := s.cfg.Results.Render(ctx, series, seg)
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, orthanc.ErrNotFound):
		return nil, echo.NewHTTPError(http.StatusNotFound, "the result is no longer in Orthanc: "+err.Error())
	case errors.Is(err, resultview.ErrMismatch), errors.Is(err, dicomseg.ErrNotReadable):
		return nil, echo.NewHTTPError(http.StatusUnprocessableEntity, err.Error())
	case ctx.Err() != nil:
		return nil, echo.NewHTTPError(http.StatusServiceUnavailable, "gave up rendering: "+ctx.Err().Error())
	}
	return nil, echo.NewHTTPError(http.StatusBadGateway, "cannot render the result: "+err.Error())
}

// jobResult is GET /v1/jobs/{id}/result: a done job's segments with their
// volumes, and where its preview's planes lie (preview_png is its image).
func (s *Server) jobResult(c echo.Context) error {
	res, err := s.render(c)
	if err != nil {
		return err
	}
	out := struct {
		*resultview.Result
		PreviewPNG string `json:"preview_png,omitempty"`
	}{Result: res}
	if res.PNG != nil {
		out.PreviewPNG = "/v1/jobs/" + c.Param("id") + "/preview.png"
	}
	return c.JSON(http.StatusOK, out)
}

// jobPreview is GET /v1/jobs/{id}/preview.png.
func (s *Server) jobPreview(c echo.Context) error {
	res, err := s.render(c)
	if err != nil {
		return err
	}
	if res.PNG == nil {
		return echo.NewHTTPError(http.StatusNotFound, "the segmentation is empty: there is nothing to preview")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, "image/png", res.PNG)
}
