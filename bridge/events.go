package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/segbridge/segbridge/internal/queue"
)

// hub hands every job status change the bridge sees (its watch on the status
// bucket, which remote workers' changes reach too) to the event streams of
// the status page. A stream that falls behind is closed rather than waited
// for: the watch also feeds the metrics, and must never block; the page
// reconnects and reloads.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch chan *queue.Status
	// gone is closed when the hub drops the subscriber (it fell behind, or
	// the bridge stops).
	gone chan struct{}
	once sync.Once
}

// subscriberBuffer is how many changes a stream may fall behind by.
const subscriberBuffer = 256

func newHub() *hub { return &hub{subs: map[*subscriber]struct{}{}} }

func (h *hub) subscribe() (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("the bridge is stopping")
	}
	s := &subscriber{ch: make(chan *queue.Status, subscriberBuffer), gone: make(chan struct{})}
	h.subs[s] = struct{}{}
	return s, nil
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	s.once.Do(func() { close(s.gone) })
}

// publish is the watch callback: it never blocks.
func (h *hub) publish(st *queue.Status, initial bool) {
	if initial {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- st:
		default:
			delete(h.subs, s)
			s.once.Do(func() { close(s.gone) })
		}
	}
}

// close drops every subscriber and refuses new ones.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		s.once.Do(func() { close(s.gone) })
	}
}

// eventKeepAlive is how often an idle stream gets a comment line, so that
// proxies and the browser keep the connection open.
const eventKeepAlive = 15 * time.Second

// events is GET /v1/events: Server-Sent Events, one "job" event (the job as
// GET /v1/jobs/{id} shows it) per status change, after a "ready" event once
// the stream is subscribed. At most MaxEventStreams are open at once.
func (s *Server) events(c echo.Context) error {
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		return echo.NewHTTPError(http.StatusServiceUnavailable, fmt.Sprintf("too many event streams open (%d)", s.cfg.MaxEventStreams))
	}
	sub, err := s.hub.subscribe()
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
	}
	defer s.hub.unsubscribe(sub)

	w := c.Response()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The server's WriteTimeout bounds ordinary answers; a stream moves its
	// deadline forward with each write instead.
	send := func(event string, data []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(eventKeepAlive + 10*time.Second)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		var err error
		if event == "" {
			_, err = w.Write([]byte(": keep-alive\n\n"))
		} else {
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
		}
		if err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := send("ready", []byte(`{}`)); err != nil {
		return nil
	}
	tick := time.NewTicker(eventKeepAlive)
	defer tick.Stop()
	ctx := c.Request().Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		case <-sub.gone:
			return nil
		case <-tick.C:
			if send("", nil) != nil {
				return nil
			}
		case st := <-sub.ch:
			b, err := json.Marshal(s.view(st))
			if err != nil {
				continue
			}
			if send("job", b) != nil {
				return nil
			}
		}
	}
}
