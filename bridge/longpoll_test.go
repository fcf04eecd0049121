package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/intake"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

// mrOrthanc is fakeOrthanc with every series an MR series, so that manual
// triggers and the Django path get as far as the queue.
type mrOrthanc struct{ fakeOrthanc }

func (f *mrOrthanc) Series(_ context.Context, id string) (*orthanc.Series, error) {
	f.call()
	return &orthanc.Series{ID: id, MainDicomTags: map[string]string{"Modality": "MR", "SeriesDescription": "T1"}}, nil
}

// startServer runs a bridge on a free loopback port with a fake queue and
// an all-MR Orthanc; it is stopped when the test ends.
func startServer(t *testing.T, cfg Config) (*Server, *fakeQueue, string) {
	t.Helper()
	q := &fakeQueue{jobs: map[string]*queue.Status{}}
	cfg.Listen = "127.0.0.1:0"
	cfg.WebhookToken = testToken
	o := &mrOrthanc{}
	in, err := intake.New(zerolog.Nop(), q, o, nil, intake.Config{Models: []*model.Model{testModel(t)}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(zerolog.Nop(), q, in, o, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s, q, "http://" + s.Addr()
}

// finish replaces the job's status with a done one (a new value, so that a
// handler holding the old one does not race with the test).
func (f *fakeQueue) finish(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.jobs[id]
	f.jobs[id] = &queue.Status{Job: old.Job, State: queue.StateDone, SEGSeriesID: seriesID}
}

type djangoAnswer struct {
	code int
	body DjangoRequest
	err  error
	took time.Duration
}

// djangoPost sends the seed's segment request with its own connection.
func djangoPost(base string, timeout time.Duration) djangoAnswer {
	start := time.Now()
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Post(base+"/api/mri/segmentation/series/"+seriesID+"/segment/", "application/json", nil)
	if err != nil {
		return djangoAnswer{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	a := djangoAnswer{code: resp.StatusCode}
	b, err := io.ReadAll(resp.Body)
	a.took = time.Since(start)
	if err == nil {
		err = json.Unmarshal(b, &a.body)
	}
	if err != nil {
		a.err = fmt.Errorf("answer %d %q: %w", resp.StatusCode, b, err)
	}
	return a
}

// waitLongPolls waits until n requests hold a long-poll slot.
func waitLongPolls(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.longPolls) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d long-polls waiting, want %d", len(s.longPolls), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openLongPolls starts n long-polls in the background and waits until all
// of them wait.
func openLongPolls(t *testing.T, s *Server, base string, n int) chan djangoAnswer {
	t.Helper()
	answers := make(chan djangoAnswer, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- djangoPost(base, time.Minute)
		}()
	}
	t.Cleanup(wg.Wait)
	waitLongPolls(t, s, n)
	return answers
}

func TestServer_LongPollLimit(t *testing.T) {
	s, q, base := startServer(t, Config{MaxLongPolls: 2, DjangoWait: 10 * time.Minute})
	waiting := openLongPolls(t, s, base, 2)
	jobID := queue.JobID(seriesID, "m", "1")

	t.Run("beyond the limit a request is answered 202 at once", func(t *testing.T) {
		// Without the limit this request would wait for the job, which
		// never ends here, for DjangoWait (10 min); the client gives up
		// after 5 s.
		a := djangoPost(base, 5*time.Second)
		if a.err != nil {
			t.Fatalf("third long-poll: %v (after %s)", a.err, a.took)
		}
		if a.code != http.StatusAccepted || a.body.RequestID != jobID || a.body.Status != "pending" {
			t.Fatalf("third long-poll answered %d %+v, want 202 pending with request_id %s", a.code, a.body, jobID)
		}
		if n := len(s.longPolls); n != 2 {
			t.Errorf("%d long-polls waiting after the refused one, want 2", n)
		}
	})

	t.Run("waiting long-polls answer 200 when the job ends and free their slots", func(t *testing.T) {
		q.finish(jobID)
		for range 2 {
			a := <-waiting
			if a.err != nil || a.code != http.StatusOK || a.body.Status != "completed" || a.body.SEGSeriesID != seriesID {
				t.Fatalf("long-poll answered %d %+v (%v), want 200 completed", a.code, a.body, a.err)
			}
		}
		waitLongPolls(t, s, 0)
	})

	t.Run("a client that goes away frees its slot", func(t *testing.T) {
		// Another series, whose job never ends; the request has a body,
		// which the seed's frontend may send and nobody reads.
		other := "a22983f4-0423e4a6-0b2ace74-d155cc73-79323ec3"
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/mri/segmentation/series/"+other+"/segment/", strings.NewReader(`{"model":""}`))
		req.Header.Set("Content-Type", "application/json")
		gone := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			gone <- err
		}()
		waitLongPolls(t, s, 1)
		cancel()
		if err := <-gone; err == nil {
			t.Fatal("the cancelled request got an answer")
		}
		waitLongPolls(t, s, 0)
	})
}

func TestServer_StopAnswersLongPolls(t *testing.T) {
	s, _, base := startServer(t, Config{MaxLongPolls: 8, DjangoWait: 10 * time.Minute})
	waiting := openLongPolls(t, s, base, 5)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// Stop used to wait for every long-poll to time out (DjangoWait).
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop took %s with 5 long-polls open, want them answered at once", took)
	}
	for range 5 {
		a := <-waiting
		if a.err != nil || a.code != http.StatusAccepted || a.body.RequestID == "" || a.body.Status != "pending" {
			t.Fatalf("long-poll answered %d %+v (%v), want 202 pending with a request_id", a.code, a.body, a.err)
		}
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if a := djangoPost(base, 2*time.Second); a.err == nil {
		t.Errorf("a stopped server answered %d", a.code)
	}
}

// TestServer_LongPollOutlivesTimeouts runs the long-poll on a server whose
// read and write timeouts are far shorter than its wait: it must still
// wait the whole time and deliver its answer.
func TestServer_LongPollOutlivesTimeouts(t *testing.T) {
	const wait = 1500 * time.Millisecond
	_, _, base := startServer(t, Config{
		DjangoWait:   wait,
		ReadTimeout:  200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond,
	})
	a := djangoPost(base, 10*time.Second)
	if a.err != nil {
		t.Fatalf("long-poll: %v after %s (the write deadline cut it)", a.err, a.took)
	}
	if a.code != http.StatusAccepted || a.body.Status != "pending" {
		t.Fatalf("long-poll answered %d %+v, want 202 pending", a.code, a.body)
	}
	// An early answer means a timeout cut the wait short.
	if a.took < wait-50*time.Millisecond {
		t.Fatalf("long-poll answered after %s, want the whole %s wait", a.took, wait)
	}

}
