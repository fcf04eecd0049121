// Package orthanc is a small client for the parts of Orthanc's REST API that
// segbridge uses: reading series and instances, downloading DICOM files and
// storing new instances. Transient failures (connection errors, 5xx) are retried
// here, with capped exponential backoff; 4xx answers are returned at once.
package orthanc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/avast/retry-go/v4"
	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/fault"
)

// Config says how to reach Orthanc.
type Config struct {
	// URL is Orthanc's REST base URL, e.g. http://127.0.0.1:8042. Required.
	URL string
	// User and Password are sent with HTTP basic authentication when User is set.
	// They are never logged.
	User     string
	Password string
	// RequestTimeout bounds one HTTP request. Default 60 s.
	RequestTimeout time.Duration
	// Attempts is how many times a request is tried in all when it fails with a
	// connection error or a 5xx answer. Default 5.
	Attempts uint
	// RetryDelay is the first backoff delay; it doubles up to MaxRetryDelay.
	// Defaults 200 ms and 5 s.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// MaxConnsPerHost caps keep-alive connections to Orthanc. Default 16.
	MaxConnsPerHost int
	// MaxBodyBytes caps any one answer's body (a DICOM file); a larger one
	// is refused before or while it is read. Default 2 GiB. JSON answers are
	// capped at 64 MiB.
	MaxBodyBytes int64
	// MaxPooledBytes caps the memory the client keeps, between downloads,
	// of instance files handed back with Recycle, in bytes. Default 256 MiB;
	// negative keeps none.
	MaxPooledBytes int64
}

func (c Config) withDefaults() Config {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 60 * time.Second
	}
	if c.Attempts == 0 {
		c.Attempts = 5
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = 200 * time.Millisecond
	}
	if c.MaxRetryDelay == 0 {
		c.MaxRetryDelay = 5 * time.Second
	}
	if c.MaxConnsPerHost == 0 {
		c.MaxConnsPerHost = 16
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 2 << 30
	}
	if c.MaxPooledBytes == 0 {
		c.MaxPooledBytes = 256 << 20
	}
	return c
}

// Client talks to one Orthanc server. It is safe for concurrent use.
type Client struct {
	base   *url.URL
	cfg    Config
	http   *http.Client
	logger zerolog.Logger
	segs   *segIndex
	// labels caches whether Orthanc has labels (see labels.go).
	labels labelSupport
	// files recycles the buffers of instance files (Recycle).
	files *bufferPool
}

// NewClient returns a client for the Orthanc at cfg.URL.
func NewClient(logger zerolog.Logger, cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if cfg.URL == "" {
		return nil, errors.New("orthanc: URL is required")
	}
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("orthanc: URL %q is not an http(s) URL", cfg.URL)
	}
	if u.User != nil {
		return nil, errors.New("orthanc: put credentials in ORTHANC_USER and ORTHANC_PASSWORD, not in the URL")
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.MaxConnsPerHost,
		MaxIdleConnsPerHost: cfg.MaxConnsPerHost,
		MaxConnsPerHost:     cfg.MaxConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		// Orthanc gzips JSON when asked; DICOM files are already dense, and
		// decompressing them costs more than the loopback transfer saves.
		DisableCompression: true,
	}
	return &Client{
		base:   u,
		cfg:    cfg,
		http:   &http.Client{Transport: tr, Timeout: cfg.RequestTimeout},
		logger: logger.With().Str("component", "orthanc").Logger(),
		segs:   newSegIndex(),
		files:  newBufferPool(cfg.MaxPooledBytes),
	}, nil
}

// URL returns the base URL the client talks to.
func (c *Client) URL() string { return c.base.String() }

// HTTPError is a non-2xx answer from Orthanc.
type HTTPError struct {
	Method, Path string
	StatusCode   int
	// Message is Orthanc's own explanation when it gave one.
	Message string
}

func (e *HTTPError) Error() string {
	hint := ""
	switch e.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		hint = " (check ORTHANC_USER and ORTHANC_PASSWORD)"
	}
	msg := ""
	if e.Message != "" {
		msg = ": " + e.Message
	}
	return fmt.Sprintf("orthanc %s %s returned %d%s%s", e.Method, e.Path, e.StatusCode, msg, hint)
}

// ErrNotFound is matched (errors.Is) by a 404 answer, and wrapped by the
// error of an id that cannot name anything in Orthanc.
var ErrNotFound = fault.New(fault.KindPermanent, "not found in Orthanc")

// Is lets errors.Is(err, ErrNotFound) match a 404.
func (e *HTTPError) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == http.StatusNotFound
}

// FaultKind says whether asking again may help: a 5xx or 429 answer is
// transient (Orthanc busy or restarting), any other 4xx permanent (the
// request, the credentials or the resource are wrong).
func (e *HTTPError) FaultKind() fault.Kind {
	if e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests {
		return fault.KindTransient
	}
	return fault.KindPermanent
}

// ErrTooLarge is wrapped by the error of an answer over MaxBodyBytes.
var ErrTooLarge = fault.New(fault.KindPermanent, "answer too large")

// do sends one request with retries and returns the answer's body.
func (c *Client) do(ctx context.Context, method, path string, body []byte, header http.Header) ([]byte, error) {
	return c.doInto(ctx, method, path, body, header, nil)
}

// doInto is do reading a successful answer of known length into a buffer
// from alloc (nil: a new one).
func (c *Client) doInto(ctx context.Context, method, path string, body []byte, header http.Header, alloc func(n int) []byte) ([]byte, error) {
	var out []byte
	err := retry.Do(func() error {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
		if err != nil {
			return retry.Unrecoverable(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		if c.cfg.User != "" {
			req.SetBasicAuth(c.cfg.User, c.cfg.Password)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return retry.Unrecoverable(ctx.Err())
			}
			return err
		}
		defer resp.Body.Close()
		limit, into := c.cfg.MaxBodyBytes, alloc
		if resp.StatusCode/100 != 2 || header.Get("Accept") == "application/json" {
			limit, into = min(limit, maxJSONBody), nil
		}
		b, err := readBody(resp, limit, into)
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return retry.Unrecoverable(fmt.Errorf("orthanc %s %s: %w", method, path, err))
			}
			return err
		}
		if resp.StatusCode/100 != 2 {
			he := &HTTPError{Method: method, Path: path, StatusCode: resp.StatusCode, Message: orthancMessage(b)}
			if fault.Classify(he) == fault.KindTransient {
				return he
			}
			return retry.Unrecoverable(he)
		}
		out = b
		return nil
	},
		retry.Context(ctx),
		retry.Attempts(c.cfg.Attempts),
		retry.Delay(c.cfg.RetryDelay),
		retry.MaxDelay(c.cfg.MaxRetryDelay),
		retry.DelayType(retry.BackOffDelay),
		retry.LastErrorOnly(true),
		retry.OnRetry(func(n uint, err error) {
			c.logger.Debug().Uint("attempt", n+1).Str("path", path).Err(err).Msg("retrying Orthanc request")
		}),
	)
	return out, err
}

// maxJSONBody caps JSON answers and error bodies: Orthanc's largest JSON
// answers (a study's series, a change page) are far below it.
const maxJSONBody = 64 << 20

// readBody reads an answer's body, refusing one over limit bytes — from its
// Content-Length before reading anything, else as soon as it passes limit.
// A body of known length goes into a buffer from alloc, when given.
func readBody(resp *http.Response, limit int64, alloc func(n int) []byte) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrTooLarge, resp.ContentLength, limit)
	}
	if resp.ContentLength > 0 {
		var b []byte
		if alloc != nil {
			b = alloc(int(resp.ContentLength))
		} else {
			b = make([]byte, resp.ContentLength)
		}
		_, err := io.ReadFull(resp.Body, b)
		return b, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err == nil && int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: over the limit of %d bytes", ErrTooLarge, limit)
	}
	return b, err
}

// orthancMessage pulls the human part out of Orthanc's JSON error body.
func orthancMessage(b []byte) string {
	var e struct {
		Message, Details string
	}
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	if e.Details != "" {
		return e.Message + " (" + e.Details + ")"
	}
	return e.Message
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	b, err := c.do(ctx, http.MethodGet, path, nil, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// System is the answer of GET /system.
type System struct {
	Name       string
	Version    string
	APIVersion int `json:"ApiVersion"`
}

// System reads /system; it is also the cheapest reachability check.
func (c *Client) System(ctx context.Context) (*System, error) {
	var s System
	if err := c.getJSON(ctx, "/system", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Series is the answer of GET /series/{id}.
type Series struct {
	ID            string
	ParentStudy   string
	Instances     []string
	IsStable      bool
	MainDicomTags map[string]string
}

// Modality returns the series' Modality tag.
func (s *Series) Modality() string { return s.MainDicomTags["Modality"] }

// ValidID reports whether id has the form of an Orthanc resource id (five
// groups of eight hexadecimal digits, a SHA-1 split by dashes).
func ValidID(id string) bool {
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

// Series reads one series. A series Orthanc does not have gives an error
// matching ErrNotFound.
func (c *Client) Series(ctx context.Context, id string) (*Series, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("series id %q: %w", id, ErrNotFound)
	}
	var s Series
	if err := c.getJSON(ctx, "/series/"+id, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Study is the answer of GET /studies/{id}.
type Study struct {
	ID                   string
	Series               []string
	MainDicomTags        map[string]string
	PatientMainDicomTags map[string]string
}

// Study reads one study.
func (c *Client) Study(ctx context.Context, id string) (*Study, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("study id %q: %w", id, ErrNotFound)
	}
	var s Study
	if err := c.getJSON(ctx, "/studies/"+id, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// InstanceFile downloads one instance's DICOM file as stored. The bytes may
// be a buffer handed back with Recycle before.
func (c *Client) InstanceFile(ctx context.Context, id string) ([]byte, error) {
	return c.doInto(ctx, http.MethodGet, "/instances/"+id+"/file", nil, http.Header{"Accept": {"application/dicom"}}, c.files.get)
}

// Recycle hands back a file InstanceFile returned, once nothing refers to
// it any more, for a later download to reuse (up to MaxPooledBytes are
// kept). A caller that never calls it loses nothing but the reuse.
func (c *Client) Recycle(file []byte) {
	c.files.put(file)
}

// PooledBytes is how many bytes of recycled files the client holds for
// later downloads.
func (c *Client) PooledBytes() int64 {
	c.files.mu.Lock()
	defer c.files.mu.Unlock()
	return c.files.held
}

// Stored is Orthanc's answer to storing an instance.
type Stored struct {
	ID            string
	ParentSeries  string
	ParentStudy   string
	ParentPatient string
	Status        string
}

// Store uploads one DICOM Part-10 file (POST /instances). Storing the same
// instance twice is not an error: Orthanc answers AlreadyStored.
func (c *Client) Store(ctx context.Context, dcm []byte) (*Stored, error) {
	b, err := c.do(ctx, http.MethodPost, "/instances", dcm, http.Header{"Content-Type": {"application/dicom"}, "Accept": {"application/json"}})
	c.segs.forget()
	if err != nil {
		return nil, err
	}
	var s Stored
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode store answer: %w", err)
	}
	if s.ID == "" {
		return nil, fmt.Errorf("orthanc stored the instance but gave no id: %s", b)
	}
	return &s, nil
}

// SetMetadata writes a user metadata entry on a resource (e.g. "series").
// Orthanc accepts only metadata names declared in its UserMetadata setting.
func (c *Client) SetMetadata(ctx context.Context, level, id, name, value string) error {
	_, err := c.do(ctx, http.MethodPut, "/"+level+"/"+id+"/metadata/"+url.PathEscape(name), []byte(value), nil)
	return err
}

// ExplorerURL is the Orthanc Explorer page of a series, under base.
func ExplorerURL(base, seriesID string) string {
	return strings.TrimRight(base, "/") + "/app/explorer.html#series?uuid=" + seriesID
}

// Change is one entry of Orthanc's /changes feed.
type Change struct {
	Seq          int64
	ChangeType   string
	ResourceType string
	ID           string
	Date         string
}

// Changes is one page of Orthanc's /changes feed.
type Changes struct {
	Changes []Change
	// Done is true when this page reaches the end of the feed.
	Done bool
	// Last is the sequence number to pass as since for the next page.
	Last int64
}

// Changes reads up to limit changes after since (GET /changes).
func (c *Client) Changes(ctx context.Context, since int64, limit int) (*Changes, error) {
	var ch Changes
	if err := c.getJSON(ctx, fmt.Sprintf("/changes?since=%d&limit=%d", since, limit), &ch); err != nil {
		return nil, err
	}
	return &ch, nil
}

// LastChange is the sequence number of Orthanc's newest change.
func (c *Client) LastChange(ctx context.Context) (int64, error) {
	var ch Changes
	if err := c.getJSON(ctx, "/changes?last", &ch); err != nil {
		return 0, err
	}
	return ch.Last, nil
}

// LookupSeries finds a series by its SeriesInstanceUID and returns its
// Orthanc id; the error matches ErrNotFound when Orthanc has none.
func (c *Client) LookupSeries(ctx context.Context, seriesInstanceUID string) (string, error) {
	b, err := c.do(ctx, http.MethodPost, "/tools/lookup", []byte(seriesInstanceUID), http.Header{"Accept": {"application/json"}})
	if err != nil {
		return "", err
	}
	var hits []struct{ ID, Type string }
	if err := json.Unmarshal(b, &hits); err != nil {
		return "", fmt.Errorf("decode lookup answer: %w", err)
	}
	for _, h := range hits {
		if h.Type == "Series" {
			return h.ID, nil
		}
	}
	return "", fmt.Errorf("series instance uid %s: %w", seriesInstanceUID, ErrNotFound)
}
