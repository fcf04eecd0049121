// Package notify tells a caller's system that a job ended: a POST to
// SEGBRIDGE_NOTIFY_URL with the job as the status API shows it, signed with
// HMAC-SHA256, retried with backoff, in the background. It runs in the bridge
// and follows the job statuses there, so jobs run by remote workers are
// announced too; a marker in the queue (ClaimOnce) makes each job generation
// announced once even when several bridges follow the same queue.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/queue"
)

// The headers of a notification. The signature is the lowercase hex
// HMAC-SHA256, keyed with the secret, of the timestamp, a dot, and the body:
//
//	X-Segbridge-Signature: sha256=hex(HMAC-SHA256(secret, timestamp + "." + body))
//
// A receiver recomputes it over the raw body, compares in constant time, and
// refuses timestamps far from its clock (a replay).
const (
	HeaderSignature = "X-Segbridge-Signature"
	HeaderTimestamp = "X-Segbridge-Timestamp"
	// HeaderEvent is "job.done", "job.failed", "job.skipped" or
	// "job.cancelled".
	HeaderEvent = "X-Segbridge-Event"
	// HeaderDelivery identifies the job generation ("<job id>.<generation>"),
	// the same on every attempt: a receiver that saw it already can ignore a
	// repeat.
	HeaderDelivery = "X-Segbridge-Delivery"
)

// Sign returns the value of HeaderSignature for body sent at timestamp (unix
// seconds, as HeaderTimestamp gives it).
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a notification's signature in constant time: what a
// receiver does, and what the tests do.
func Verify(secret []byte, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// statuses is what the notifier needs of the queue.
type statuses interface {
	Watch(ctx context.Context, fn func(st *queue.Status, initial bool)) error
	ClaimOnce(ctx context.Context, what, jobID string, generation uint64) (bool, error)
}

var _ statuses = (*queue.Queue)(nil)

// Config configures a Notifier. Every zero field but URL and Secret takes its
// default.
type Config struct {
	// URL receives the notifications. Required.
	URL string
	// Secret keys the signatures. Required.
	Secret string
	// Body makes a notification's body from a status: the bridge's view of
	// the job, as GET /v1/jobs/{id} answers. Required.
	Body func(st *queue.Status) ([]byte, error)
	// Attempts is how many times a notification is sent in all before it is
	// given up (logged). Default 8.
	Attempts int
	// FirstDelay is the wait after the first failed attempt; it doubles up
	// to MaxDelay. Defaults 1 s and 2 min (8 attempts span about 4 min).
	FirstDelay time.Duration
	MaxDelay   time.Duration
	// Timeout bounds one attempt. Default 10 s.
	Timeout time.Duration
	// CatchUp: a job that ended this long before the notifier started, and
	// that no bridge announced, is announced at start (a bridge that stopped
	// between a job's end and its notification). Default 10 min.
	CatchUp time.Duration
	// Senders is how many notifications are sent at once; Backlog how many
	// may wait, beyond which new ones are dropped (logged). Defaults 4, 4096.
	Senders int
	Backlog int
	// Client sends the requests. Default: one that follows no redirects (a
	// redirect would carry the signature elsewhere).
	Client *http.Client
	// Clock drives the backoff. Default: the real clock.
	Clock clockwork.Clock
}

func (c Config) withDefaults() Config {
	if c.Attempts <= 0 {
		c.Attempts = 8
	}
	if c.FirstDelay <= 0 {
		c.FirstDelay = time.Second
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 2 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.CatchUp <= 0 {
		c.CatchUp = 10 * time.Minute
	}
	if c.Senders <= 0 {
		c.Senders = 4
	}
	if c.Backlog <= 0 {
		c.Backlog = 4096
	}
	if c.Client == nil {
		c.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	return c
}

// Notifier sends the notifications.
type Notifier struct {
	cfg    Config
	q      statuses
	logger zerolog.Logger
	work   chan *queue.Status
	start  time.Time

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// sent delivers the delivery id of every notification that ended (sent
	// or given up), for tests.
	sent chan Outcome
}

// Outcome is how one notification ended.
type Outcome struct {
	Delivery string
	Sent     bool
	Attempts int
	Err      error
}

// New makes a notifier; Start starts it.
func New(logger zerolog.Logger, q statuses, cfg Config) (*Notifier, error) {
	if cfg.URL == "" || cfg.Secret == "" || cfg.Body == nil {
		return nil, errors.New("notify: URL, Secret and Body are required")
	}
	cfg = cfg.withDefaults()
	return &Notifier{
		cfg:    cfg,
		q:      q,
		logger: logger.With().Str("component", "notify").Logger(),
		work:   make(chan *queue.Status, cfg.Backlog),
		sent:   make(chan Outcome, 64),
	}, nil
}

// Outcomes delivers how each notification ended; tests read it instead of
// sleeping. It drops outcomes nobody reads.
func (n *Notifier) Outcomes() <-chan Outcome { return n.sent }

// Start follows the job statuses and sends notifications in the background;
// it returns once the statuses are followed.
func (n *Notifier) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cancel != nil {
		return errors.New("notify: already started")
	}
	ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	n.start = n.cfg.Clock.Now()
	for range n.cfg.Senders {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case st := <-n.work:
					n.handle(ctx, st)
				}
			}
		}()
	}
	if err := n.q.Watch(ctx, n.observe); err != nil {
		n.cancel()
		n.wg.Wait()
		n.cancel = nil
		return fmt.Errorf("notify: %w", err)
	}
	n.logger.Info().Str("url", n.cfg.URL).Msg("notifying job ends")
	return nil
}

// Stop stops following statuses and sending; notifications waiting for a
// retry are dropped (and logged). Safe to call twice.
func (n *Notifier) Stop(ctx context.Context) error {
	n.mu.Lock()
	cancel := n.cancel
	n.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		if left := len(n.work); left > 0 {
			n.logger.Warn().Int("dropped", left).Msg("stopped with job ends not yet notified")
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("notify: stop: %w", ctx.Err())
	}
}

// observe is the watch callback: it must not block, so it only picks the
// statuses worth a notification and hands them over.
func (n *Notifier) observe(st *queue.Status, initial bool) {
	if !st.State.Final() {
		return
	}
	if initial && (st.FinishedAt == nil || n.start.Sub(*st.FinishedAt) > n.cfg.CatchUp) {
		return
	}
	select {
	case n.work <- st:
	default:
		n.logger.Error().Str("job", st.ID).Int("backlog", n.cfg.Backlog).Msg("notification backlog full: job end not notified")
	}
}

// handle claims a job generation's notification and sends it.
func (n *Notifier) handle(ctx context.Context, st *queue.Status) {
	delivery := st.ID + "." + strconv.FormatUint(st.Generation, 10)
	log := n.logger.With().Str("job", st.ID).Uint64("generation", st.Generation).Str("state", string(st.State)).Logger()
	first, err := n.q.ClaimOnce(ctx, "notify", st.ID, st.Generation)
	if err != nil {
		if ctx.Err() == nil {
			log.Error().Err(err).Msg("cannot claim the notification; not sent")
		}
		n.report(Outcome{Delivery: delivery, Err: err})
		return
	}
	if !first {
		return // another bridge (or an earlier watch event) has it
	}
	body, err := n.cfg.Body(st)
	if err != nil {
		log.Error().Err(err).Msg("cannot make the notification's body")
		n.report(Outcome{Delivery: delivery, Err: err})
		return
	}
	out := n.send(ctx, delivery, "job."+string(st.State), body)
	switch {
	case out.Sent:
		log.Info().Int("attempts", out.Attempts).Msg("job end notified")
	case ctx.Err() != nil:
		log.Warn().Err(out.Err).Msg("stopped before the job end was notified")
	default:
		log.Error().Err(out.Err).Int("attempts", out.Attempts).Msg("gave up notifying the job end")
	}
	n.report(out)
}

func (n *Notifier) report(o Outcome) {
	select {
	case n.sent <- o:
	default:
	}
}

// errPermanent marks an answer that another attempt would not change.
var errPermanent = errors.New("the receiver refused the notification")

// send posts body until it is taken, refused for good, Attempts run out, or
// ctx ends, waiting FirstDelay, doubling, between attempts (or what a
// Retry-After asks, up to MaxDelay).
func (n *Notifier) send(ctx context.Context, delivery, event string, body []byte) Outcome {
	out := Outcome{Delivery: delivery}
	delay := n.cfg.FirstDelay
	for out.Attempts < n.cfg.Attempts {
		out.Attempts++
		wait, err := n.attempt(ctx, delivery, event, body)
		if err == nil {
			out.Sent, out.Err = true, nil
			return out
		}
		out.Err = err
		if errors.Is(err, errPermanent) || out.Attempts == n.cfg.Attempts {
			return out
		}
		wait = min(max(wait, delay), n.cfg.MaxDelay)
		select {
		case <-ctx.Done():
			out.Err = ctx.Err()
			return out
		case <-n.cfg.Clock.After(wait):
		}
		delay = min(2*delay, n.cfg.MaxDelay)
	}
	return out
}

// attempt posts once; retryAfter is what the receiver asked to wait.
func (n *Notifier) attempt(ctx context.Context, delivery, event string, body []byte) (retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errPermanent, err)
	}
	ts := strconv.FormatInt(n.cfg.Clock.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "segbridge")
	req.Header.Set(HeaderEvent, event)
	req.Header.Set(HeaderDelivery, delivery)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign([]byte(n.cfg.Secret), ts, body))
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch code := resp.StatusCode; {
	case code/100 == 2:
		return 0, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code/100 == 5:
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			retryAfter = time.Duration(s) * time.Second
		}
		return retryAfter, fmt.Errorf("the receiver answered %s", resp.Status)
	default:
		return 0, fmt.Errorf("%w: it answered %s", errPermanent, resp.Status)
	}
}
