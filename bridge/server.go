// Package bridge is segbridge's HTTP service: it takes Orthanc's stable-series
// webhook and manual triggers, queues jobs, and answers status questions. It
// is the only package that knows about HTTP routing (labstack/echo).
package bridge

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/intake"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

// jobQueue is what the bridge needs of the queue: it reads statuses and
// cancels; every job it queues goes through the intake.
type jobQueue interface {
	Status(ctx context.Context, id string) (*queue.Status, error)
	SeriesStatus(ctx context.Context, seriesID string) ([]*queue.Status, error)
	List(ctx context.Context, state queue.State, limit int) ([]*queue.Status, error)
	Cancel(ctx context.Context, id string) (*queue.Status, error)
	Ready(ctx context.Context) error
	Depth(ctx context.Context) (uint64, error)
	Watch(ctx context.Context, fn func(st *queue.Status, initial bool)) error
}

// admitter decides what to queue (intake.Intake).
type admitter interface {
	Admit(ctx context.Context, req intake.Request) (intake.Outcome, error)
	Models() []*model.Model
	DefaultModel() *model.Model
}

// seriesReader is what the bridge needs of Orthanc. The webhook handler never
// calls it: Orthanc's REST API is blocked while its Lua script waits on us.
type seriesReader interface {
	Series(ctx context.Context, id string) (*orthanc.Series, error)
	System(ctx context.Context) (*orthanc.System, error)
	FindSEG(ctx context.Context, sourceSeriesID, algorithm, version string) (*orthanc.SEGRef, error)
	LookupSeries(ctx context.Context, seriesInstanceUID string) (string, error)
	RecentSeries(ctx context.Context, scan, limit int, keep func(modality string) bool) ([]orthanc.SeriesSummary, error)
}

var (
	_ jobQueue     = (*queue.Queue)(nil)
	_ seriesReader = (*orthanc.Client)(nil)
	_ admitter     = (*intake.Intake)(nil)
)

// Config configures the bridge.
type Config struct {
	// Listen is the HTTP address. Default 127.0.0.1:8080.
	Listen string
	// WebhookToken is the bearer token of POST /v1/events/orthanc. Required.
	WebhookToken string
	// APIToken, when set, is required as a bearer token on the /v1 API.
	APIToken string
	// Metrics are what /metrics shows; pass the same to the intake as its
	// Observer. Default: new, empty ones.
	Metrics *Metrics
	// OrthancPublicURL is the base of the Orthanc Explorer links in answers.
	OrthancPublicURL string
	// BodyLimit caps request bodies. Default "1M".
	BodyLimit string
	// DjangoWait is how long the seed-compatible POST
	// /api/mri/segmentation/series/{id}/segment/ waits for the job to end
	// before answering 202 with its request_id. Default 300 s; negative: do
	// not wait.
	DjangoWait time.Duration
	// MaxLongPolls is how many of those requests may wait at once; the
	// next ones are answered 202 with their request_id at once (the job
	// goes on). Each waiting request holds a connection and reads the job's
	// status four times a second. Default 256.
	MaxLongPolls int

	// HeaderTimeout bounds reading a request's headers, so connections that
	// open and send nothing (or half a request line) are closed and cannot
	// pile up. Default 10 s.
	HeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included (bodies are
	// at most BodyLimit). Default 30 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer, so a client that stops reading cannot hold a goroutine
	// and its buffers. The long-poll above extends it for itself to
	// DjangoWait plus a margin. Default 60 s.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request. Default 120 s.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers. Default 64 KiB (a
	// bearer token and a browser's headers fit many times over).
	MaxHeaderBytes int

	// MaxEventStreams is how many status pages may follow GET /v1/events at
	// once; the next get 503. Default 64.
	MaxEventStreams int
	// Results renders done jobs for the status page (resultview.Renderer);
	// nil: the page shows volumes and links but no preview.
	Results ResultRenderer
}

// withDefaults fills the fields left zero.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.BodyLimit == "" {
		c.BodyLimit = "1M"
	}
	if c.DjangoWait == 0 {
		c.DjangoWait = 300 * time.Second
	}
	if c.MaxLongPolls <= 0 {
		c.MaxLongPolls = 256
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxEventStreams <= 0 {
		c.MaxEventStreams = 64
	}
	return c
}

// Server is the bridge's HTTP server.
type Server struct {
	cfg     Config
	logger  zerolog.Logger
	queue   jobQueue
	intake  admitter
	orthanc seriesReader
	echo    *echo.Echo
	metrics *metrics
	// metricsHTTP serves /metrics from the metrics' own registry.
	metricsHTTP http.Handler

	// longPolls holds a token per waiting long-poll; stopping is closed by
	// Stop so that they all answer at once.
	longPolls    chan struct{}
	stopping     chan struct{}
	stoppingOnce sync.Once

	// hub feeds the status page's event streams; streams holds a token per
	// open stream.
	hub     *hub
	streams chan struct{}

	mu          sync.Mutex
	listener    net.Listener
	done        chan error
	stopWatchFn context.CancelFunc
}

// New builds the bridge's HTTP server around the intake that decides what
// to queue.
func New(logger zerolog.Logger, q jobQueue, in admitter, o seriesReader, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.WebhookToken == "" {
		return nil, errors.New("bridge: WebhookToken is required")
	}
	if in == nil {
		return nil, errors.New("bridge: no intake")
	}
	s := &Server{
		cfg:     cfg,
		logger:  logger.With().Str("component", "bridge").Logger(),
		queue:   q,
		intake:  in,
		orthanc: o,

		longPolls: make(chan struct{}, cfg.MaxLongPolls),
		stopping:  make(chan struct{}),
		hub:       newHub(),
		streams:   make(chan struct{}, cfg.MaxEventStreams),
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	s.metrics = cfg.Metrics.m
	s.metrics.mu.Lock()
	s.metrics.depth = q.Depth
	s.metrics.mu.Unlock()
	s.metricsHTTP = promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: nil})
	s.echo = s.routes()
	s.echo.Server.ReadHeaderTimeout = cfg.HeaderTimeout
	s.echo.Server.ReadTimeout = cfg.ReadTimeout
	s.echo.Server.WriteTimeout = cfg.WriteTimeout
	s.echo.Server.IdleTimeout = cfg.IdleTimeout
	s.echo.Server.MaxHeaderBytes = cfg.MaxHeaderBytes
	return s, nil
}

// Handler returns the HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.echo }

// Start listens and serves in the background; it returns once listening.
func (s *Server) Start(ctx context.Context) error {
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	watch := func(st *queue.Status, initial bool) {
		s.metrics.status(st, initial)
		s.hub.publish(st, initial)
	}
	if err := s.queue.Watch(wctx, watch); err != nil {
		stopWatch()
		return fmt.Errorf("bridge: %w", err)
	}
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		stopWatch()
		return fmt.Errorf("bridge: listen %s: %w", s.cfg.Listen, err)
	}
	done := make(chan error, 1)
	s.mu.Lock()
	s.listener = l
	s.done = done
	s.stopWatchFn = stopWatch
	s.mu.Unlock()
	s.echo.Listener = l
	go func() {
		err := s.echo.Start("")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	s.logger.Info().Str("addr", l.Addr().String()).Msg("bridge listening")
	return nil
}

// Addr is the address the server listens on (after Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Stop stops accepting requests and waits for those in flight. Waiting
// long-polls are answered 202 with their request_id at once rather than
// waited for (up to DjangoWait): their jobs go on, and the client asks for
// the status later. Safe to call twice.
func (s *Server) Stop(ctx context.Context) error {
	s.stoppingOnce.Do(func() { close(s.stopping); s.hub.close() })
	s.mu.Lock()
	done, stopWatch := s.done, s.stopWatchFn
	s.done, s.stopWatchFn = nil, nil
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	stopWatch()
	if err := s.echo.Shutdown(ctx); err != nil {
		return fmt.Errorf("bridge: shutdown: %w", err)
	}
	return <-done
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(middleware.Recover())
	// Outside the body limit, so that a webhook refused as too large counts.
	e.Use(s.timeWebhook)
	e.Use(middleware.BodyLimit(s.cfg.BodyLimit))
	e.Use(s.logRequests)

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", s.metricsHandler)
	e.POST(webhookPath, s.webhook, s.requireToken(func() string { return s.cfg.WebhookToken }))

	api := e.Group("/v1", s.requireToken(func() string { return s.cfg.APIToken }))
	api.POST("/series/:id/segment", s.trigger)
	api.GET("/series/:id", s.seriesStatus)
	api.GET("/jobs", s.listJobs)
	api.GET("/jobs/:id", s.getJob)
	api.DELETE("/jobs/:id", s.cancelJob)
	// The status page's own API, and its files.
	api.GET("/events", s.events)
	api.GET("/page/series", s.pageSeries)
	api.GET("/jobs/:id/result", s.jobResult)
	api.GET("/jobs/:id/preview.png", s.jobPreview)
	s.pageRoutes(e)

	// The seed's Django paths, so its frontend works unchanged.
	dj := e.Group("/api/mri/segmentation", s.requireToken(func() string { return s.cfg.APIToken }))
	for _, suffix := range []string{"/", ""} {
		dj.POST("/series/:id/segment"+suffix, s.djangoSegment)
		dj.GET("/status/:rid"+suffix, s.djangoStatus)
		dj.GET("/requests"+suffix, s.djangoRequests)
	}
	return e
}

// webhookPath is where Orthanc's Lua script posts.
const webhookPath = "/v1/events/orthanc"

// timeWebhook counts the webhook's answers by status and records how long
// they take: Orthanc's whole REST API waits on them.
func (s *Server) timeWebhook(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Path() != webhookPath {
			return next(c)
		}
		start := time.Now()
		err := next(c)
		code := c.Response().Status
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code = he.Code
		} else if err != nil {
			code = http.StatusInternalServerError
		}
		s.metrics.observeWebhook(code, time.Since(start))
		return err
	}
}

func (s *Server) metricsHandler(c echo.Context) error {
	s.metricsHTTP.ServeHTTP(c.Response(), c.Request())
	return nil
}

// apiError is the JSON body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code := http.StatusInternalServerError
	msg := "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code = he.Code
		msg = fmt.Sprint(he.Message)
		if code == http.StatusRequestEntityTooLarge {
			msg = "request body too large (limit " + s.cfg.BodyLimit + ")"
		}
	} else {
		s.logger.Error().Err(err).Str("path", c.Path()).Msg("request failed")
	}
	_ = c.JSON(code, apiError{Error: msg})
}

func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		s.logger.Debug().Str("method", c.Request().Method).Str("path", c.Request().URL.Path).
			Int("status", c.Response().Status).Dur("took", time.Since(start)).Msg("request")
		return nil
	}
}

// requireToken checks a bearer token in constant time. An empty expected
// token means the route is open (only allowed on a loopback listener; the
// configuration checks that before we get here).
func (s *Server) requireToken(expected func() string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			want := expected()
			if want == "" {
				return next(c)
			}
			got, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(want)) != 1 {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="segbridge"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "missing or wrong bearer token")
			}
			return next(c)
		}
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{"queue": "ok", "orthanc": "ok"}
	ready := true
	if err := s.queue.Ready(ctx); err != nil {
		checks["queue"], ready = err.Error(), false
	}
	if _, err := s.orthanc.System(ctx); err != nil {
		checks["orthanc"], ready = err.Error(), false
	}
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	return c.JSON(code, map[string]any{"ready": ready, "checks": checks})
}
