package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
	"github.com/segbridge/segbridge/internal/resultview"
)

func TestHub_SlowSubscriberIsDropped(t *testing.T) {
	h := newHub()
	fast, err := h.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	slow, err := h.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	st := &queue.Status{Job: queue.Job{ID: "x"}, State: queue.StateRunning}
	for i := range subscriberBuffer + 1 {
		h.publish(st, false)
		if i < subscriberBuffer {
			<-fast.ch // the fast one keeps up
		}
	}
	select {
	case <-slow.gone:
	default:
		t.Fatal("a subscriber that fell behind was not dropped")
	}
	select {
	case <-fast.gone:
		t.Fatal("a subscriber that kept up was dropped")
	default:
	}
	<-fast.ch
	h.publish(st, true) // initial values are not news
	select {
	case <-fast.ch:
		t.Fatal("an initial status was published")
	default:
	}
	h.close()
	<-fast.gone
	if _, err := h.subscribe(); err == nil {
		t.Error("a closed hub took a subscriber")
	}
}

// readEvent reads one Server-Sent Event.
func readEvent(t *testing.T, r *bufio.Reader) (event, data string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func openEvents(t *testing.T, base, token string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/events", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestEvents_Stream(t *testing.T) {
	const apiToken = "api-token-0123456789abcdef0123456789"
	s, _, base := startServer(t, Config{APIToken: apiToken, MaxEventStreams: 1, OrthancPublicURL: "http://127.0.0.1:8042"})

	if resp := openEvents(t, base, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", resp.StatusCode)
	}
	resp := openEvents(t, base, apiToken)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	if ev, _ := readEvent(t, r); ev != "ready" {
		t.Fatalf("first event %q, want ready", ev)
	}
	if second := openEvents(t, base, apiToken); second.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a stream beyond MaxEventStreams: %d, want 503", second.StatusCode)
	}

	id := queue.JobID(seriesID, "m", "1")
	s.hub.publish(&queue.Status{Job: queue.Job{ID: id, SeriesID: seriesID}, State: queue.StateDone, SEGSeriesID: "seg", SRSeriesID: "sr"}, false)
	ev, data := readEvent(t, r)
	var got struct {
		ID, State string
		SEGURL    string `json:"seg_url"`
		SRURL     string `json:"sr_url"`
	}
	if err := json.Unmarshal([]byte(data), &got); err != nil || ev != "job" {
		t.Fatalf("event %q %s: %v", ev, data, err)
	}
	if got.ID != id || got.State != "done" || !strings.HasSuffix(got.SEGURL, "uuid=seg") || !strings.HasSuffix(got.SRURL, "uuid=sr") {
		t.Errorf("job event %+v", got)
	}

	// Stopping the bridge ends the stream at once.
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, r)
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream outlived the bridge")
	}
}

func TestPage_Files(t *testing.T) {
	_, _, base := startServer(t, Config{APIToken: "api-token-0123456789abcdef0123456789"})
	for _, tc := range []struct{ path, contentType, contains string }{
		{"/", "text/html", `<script src="/ui/app.js" defer></script>`},
		{"/ui/app.js", "javascript", "/v1/events"},
		{"/ui/app.css", "text/css", ":focus-visible"},
	} {
		// The page's files hold no data: they need no token.
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), tc.contentType) || !strings.Contains(string(b), tc.contains) {
			t.Errorf("%s: %d %s", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", tc.path, csp)
		}
	}
	if resp, _ := http.Get(base + "/ui/nothing.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a missing file: %d", resp.StatusCode)
	}
}

// fakeRenderer answers Render with res, or err.
type fakeRenderer struct {
	res   *resultview.Result
	err   error
	calls []string
}

func (f *fakeRenderer) Render(_ context.Context, series, seg string) (*resultview.Result, error) {
	f.calls = append(f.calls, series+"/"+seg)
	return f.res, f.err
}

func TestJobResult(t *testing.T) {
	r := &fakeRenderer{res: &resultview.Result{Segments: []resultview.Segment{{Number: 1, Name: "Head", Voxels: 10, VolumeML: 0.01}}, PNG: []byte("\x89PNG fake")}}
	s, q, o := setupWith(t, Config{Results: r})
	done := queue.JobID(seriesID, "m", "1")
	q.jobs[done] = &queue.Status{Job: queue.Job{ID: done, SeriesID: seriesID}, State: queue.StateDone, SEGInstanceID: "seg-inst"}

	code, body := do(s, http.MethodGet, "/v1/jobs/"+done+"/result", "", "")
	if code != http.StatusOK || body["preview_png"] != "/v1/jobs/"+done+"/preview.png" || len(r.calls) != 1 || r.calls[0] != seriesID+"/seg-inst" {
		t.Fatalf("result: %d %v, renders %v", code, body, r.calls)
	}
	req, _ := http.NewRequest(http.MethodGet, "/v1/jobs/"+done+"/preview.png", nil)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "image/png" || rec.Body.String() != "\x89PNG fake" {
		t.Errorf("preview.png: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}

	t.Run("a job whose state was lost: its SEG is found in Orthanc", func(t *testing.T) {
		other := "0a0a0a0a-0423e4a6-0b2ace74-d155cc73-79323ec3"
		o.segs[other] = &orthanc.SEGRef{SeriesID: "seg-series", InstanceID: "found-inst"}
		if code, _ := do(s, http.MethodGet, "/v1/jobs/"+queue.JobID(other, "m", "1")+"/result", "", ""); code != http.StatusOK || r.calls[len(r.calls)-1] != other+"/found-inst" {
			t.Errorf("%d, renders %v", code, r.calls)
		}
	})
	for _, tc := range []struct {
		name string
		job  string
		st   *queue.Status
		err  error
		want int
	}{
		{"running", queue.JobID("1b1b1b1b-0423e4a6-0b2ace74-d155cc73-79323ec3", "m", "1"), &queue.Status{State: queue.StateRunning}, nil, http.StatusConflict},
		{"unknown", queue.JobID("2c2c2c2c-0423e4a6-0b2ace74-d155cc73-79323ec3", "m", "1"), nil, nil, http.StatusNotFound},
		{"not a job id", "nonsense", nil, nil, http.StatusNotFound},
		{"a SEG that does not fit", done, nil, resultview.ErrMismatch, http.StatusUnprocessableEntity},
		{"gone from Orthanc", done, nil, orthanc.ErrNotFound, http.StatusNotFound},
		{"Orthanc down", done, nil, errors.New("connection refused"), http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.st != nil {
				tc.st.Job = queue.Job{ID: tc.job}
				q.jobs[tc.job] = tc.st
			}
			r.err = tc.err
			defer func() { r.err = nil }()
			code, body := do(s, http.MethodGet, "/v1/jobs/"+tc.job+"/result", "", "")
			if msg, _ := body["error"].(string); code != tc.want || msg == "" {
				t.Errorf("%d %v, want %d with a reason", code, body, tc.want)
			}
		})
	}
	t.Run("a bridge without a renderer", func(t *testing.T) {
		s, q, _ := setup(t)
		q.jobs[done] = &queue.Status{Job: queue.Job{ID: done, SeriesID: seriesID}, State: queue.StateDone, SEGInstanceID: "seg-inst"}
		if code, _ := do(s, http.MethodGet, "/v1/jobs/"+done+"/result", "", ""); code != http.StatusNotImplemented {
			t.Errorf("%d, want 501", code)
		}
	})
}

// browseOrthanc is a fake Orthanc with recent series.
type browseOrthanc struct {
	fakeOrthanc
	recent []orthanc.SeriesSummary
}

func (f *browseOrthanc) RecentSeries(_ context.Context, _, limit int, keep func(string) bool) ([]orthanc.SeriesSummary, error) {
	var out []orthanc.SeriesSummary
	for _, s := range f.recent {
		if keep(s.Modality) && len(out) < limit {
			out = append(out, s)
		}
	}
	return out, nil
}

func TestPageSeries(t *testing.T) {
	s, q, _ := setup(t)
	bo := &browseOrthanc{fakeOrthanc: fakeOrthanc{series: map[string]*orthanc.Series{}, segs: map[string]*orthanc.SEGRef{}}}
	s.orthanc = bo
	mr := func(id, desc string) orthanc.SeriesSummary {
		return orthanc.SeriesSummary{ID: id, Modality: "MR", SeriesDescription: desc, PatientName: "Doe^Jane",
			MainDicomTags: map[string]string{"Modality": "MR", "SeriesDescription": desc}}
	}
	t1 := mr(seriesID, "T1 MPRAGE")
	flair := mr("3d3d3d3d-0423e4a6-0b2ace74-d155cc73-79323ec3", "FLAIR")
	ct := orthanc.SeriesSummary{ID: "4e4e4e4e-0423e4a6-0b2ace74-d155cc73-79323ec3", Modality: "CT", MainDicomTags: map[string]string{"Modality": "CT"}}
	seg := orthanc.SeriesSummary{ID: "5f5f5f5f-0423e4a6-0b2ace74-d155cc73-79323ec3", Modality: "SEG", MainDicomTags: map[string]string{"Modality": "SEG"}}
	bo.recent = []orthanc.SeriesSummary{t1, flair, ct, seg}
	bo.segs[flair.ID] = &orthanc.SEGRef{SeriesID: "old-seg", InstanceID: "old-inst"}
	running := queue.JobID(seriesID, "m", "1")
	q.jobs[running] = &queue.Status{Job: queue.Job{ID: running, SeriesID: seriesID, Model: "m"}, State: queue.StateRunning, Stage: "inference"}

	req, _ := http.NewRequest(http.MethodGet, "/v1/page/series", nil)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	var got struct {
		Series []struct {
			ID     string   `json:"series_id"`
			State  string   `json:"state"`
			Models []string `json:"models"`
			Jobs   []struct {
				State, Source, Stage string
			} `json:"jobs"`
			ExplorerURL string `json:"explorer_url"`
		} `json:"series"`
		Models []struct{ Name string } `json:"models"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body.String(), err)
	}
	// CT and SEG series are not listed: the one model applies to MR.
	if len(got.Series) != 2 || len(got.Models) != 1 || got.Models[0].Name != "m" {
		t.Fatalf("listed %+v, models %+v", got.Series, got.Models)
	}
	a, b := got.Series[0], got.Series[1]
	if a.ID != seriesID || a.State != "running" || len(a.Jobs) != 1 || a.Jobs[0].Stage != "inference" || len(a.Models) != 1 || !strings.Contains(a.ExplorerURL, seriesID) {
		t.Errorf("T1 series: %+v", a)
	}
	// The FLAIR series' SEG is in Orthanc; the model's rules (T1) do not take
	// the series, so no model is offered, and nothing was written.
	if b.ID != flair.ID || len(b.Models) != 0 || len(b.Jobs) != 0 {
		t.Errorf("FLAIR series: %+v", b)
	}
	if q.writes != 0 {
		t.Errorf("listing wrote %d job states", q.writes)
	}
}
