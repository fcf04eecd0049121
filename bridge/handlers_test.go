package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/intake"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

// fakeQueue records enqueued jobs; the real queue is tested in
// internal/queue and end to end in cmd/segbridge.
type fakeQueue struct {
	mu     sync.Mutex
	jobs   map[string]*queue.Status
	writes int
}

func (f *fakeQueue) Enqueue(_ context.Context, job queue.Job, _ bool) (*queue.Status, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if job.ID == "" {
		job.ID = queue.JobID(job.SeriesID, job.Model, job.ModelVersion)
	}
	if st, ok := f.jobs[job.ID]; ok {
		return st, false, nil
	}
	st := &queue.Status{Job: job, State: queue.StateQueued}
	f.jobs[job.ID] = st
	f.writes++
	return st, true, nil
}
func (f *fakeQueue) FoundInOrthanc(_ context.Context, job queue.Job, res queue.Result) (*queue.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	st := &queue.Status{Job: job, State: queue.StateDone, Source: "orthanc", SEGSeriesID: res.SEGSeriesID}
	f.jobs[job.ID] = st
	return st, nil
}
func (f *fakeQueue) Status(_ context.Context, id string) (*queue.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.jobs[id]; ok {
		return st, nil
	}
	return nil, queue.ErrNotFound
}
func (f *fakeQueue) SeriesStatus(_ context.Context, series string) ([]*queue.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*queue.Status
	for _, st := range f.jobs {
		if st.SeriesID == series {
			out = append(out, st)
		}
	}
	return out, nil
}
func (f *fakeQueue) List(context.Context, queue.State, int) ([]*queue.Status, error) {
	return nil, nil
}
func (f *fakeQueue) Cancel(context.Context, string) (*queue.Status, error) {
	return nil, queue.ErrNotFound
}
func (f *fakeQueue) Ready(context.Context) error                            { return nil }
func (f *fakeQueue) Depth(context.Context) (uint64, error)                  { return 0, nil }
func (f *fakeQueue) Watch(context.Context, func(*queue.Status, bool)) error { return nil }

// fakeOrthanc counts calls: the webhook must make none. series are the
// series it has; segs the SEGs it holds, by source series.
type fakeOrthanc struct {
	mu     sync.Mutex
	calls  int
	series map[string]*orthanc.Series
	segs   map[string]*orthanc.SEGRef
}

func (f *fakeOrthanc) call() {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
}
func (f *fakeOrthanc) Series(_ context.Context, id string) (*orthanc.Series, error) {
	f.call()
	if s, ok := f.series[id]; ok {
		return s, nil
	}
	return nil, &orthanc.HTTPError{StatusCode: http.StatusNotFound, Method: "GET", Path: "/series/" + id}
}
func (f *fakeOrthanc) System(context.Context) (*orthanc.System, error) {
	f.call()
	return &orthanc.System{}, nil
}
func (f *fakeOrthanc) FindSEG(_ context.Context, src, _, _ string) (*orthanc.SEGRef, error) {
	f.call()
	return f.segs[src], nil
}
func (f *fakeOrthanc) LookupSeries(context.Context, string) (string, error) {
	f.call()
	return "", orthanc.ErrNotFound
}
func (f *fakeOrthanc) RecentSeries(context.Context, int, int, func(string) bool) ([]orthanc.SeriesSummary, error) {
	f.call()
	return nil, nil
}

const testToken = "0123456789abcdef0123"

// testModel parses a manifest named m for MR T1 series.
func testModel(t *testing.T) *model.Model {
	t.Helper()
	return testModelWith(t, `{ modalities: [MR], series_description: "(?i)t1" }`)
}

// testModelWith parses a manifest named m with the given applies_to.
func testModelWith(t *testing.T, appliesTo string) *model.Model {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.onnx"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := model.Parse([]byte(`
name: m
version: "1"
file: m.onnx
learned: false
applies_to: `+appliesTo+`
output: { activation: sigmoid }
segments:
  - { label: 1, name: Head, category: {value: "123037004", scheme: SCT, meaning: "Anatomical Structure"}, type: {value: "69536005", scheme: SCT, meaning: "Head"}, rgb: [255, 200, 0] }
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func setupWith(t *testing.T, cfg Config) (*Server, *fakeQueue, *fakeOrthanc) {
	t.Helper()
	q := &fakeQueue{jobs: map[string]*queue.Status{}}
	o := &fakeOrthanc{series: map[string]*orthanc.Series{}, segs: map[string]*orthanc.SEGRef{}}
	cfg.WebhookToken = testToken
	cfg.Metrics = NewMetrics()
	in, err := intake.New(zerolog.Nop(), q, o, cfg.Metrics, intake.Config{Models: []*model.Model{testModel(t)}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(zerolog.Nop(), q, in, o, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, q, o
}

func setup(t *testing.T) (*Server, *fakeQueue, *fakeOrthanc) { return setupWith(t, Config{}) }

func do(s *Server, method, path, token, body string) (int, map[string]any) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

const seriesID = "e22983f4-0423e4a6-0b2ace74-d155cc73-79323ec3"

func TestServer_Webhook(t *testing.T) {
	tests := []struct {
		name      string
		token     string
		body      string
		wantCode  int
		wantJobs  int
		wantField string
	}{
		{"queues an MR T1 series", testToken, `{"event":"StableSeries","series_id":"` + seriesID + `","tags":{"Modality":"MR","SeriesDescription":"T1w"}}`, http.StatusAccepted, 1, "id"},
		{"skips a series the model's description rule refuses", testToken, `{"series_id":"` + seriesID + `","tags":{"Modality":"MR","SeriesDescription":"FLAIR"}}`, http.StatusOK, 0, "reason"},
		{"skips a SEG series", testToken, `{"series_id":"` + seriesID + `","tags":{"Modality":"SEG"}}`, http.StatusOK, 0, "skipped"},
		{"skips an unconfigured modality", testToken, `{"series_id":"` + seriesID + `","tags":{"Modality":"CT"}}`, http.StatusOK, 0, "skipped"},
		{"no token", "", `{"series_id":"` + seriesID + `","tags":{"Modality":"MR"}}`, http.StatusUnauthorized, 0, "error"},
		{"wrong token", testToken + "x", `{"series_id":"` + seriesID + `","tags":{"Modality":"MR"}}`, http.StatusUnauthorized, 0, "error"},
		{"malformed JSON", testToken, `{"series_id":`, http.StatusBadRequest, 0, "error"},
		{"not an Orthanc id", testToken, `{"series_id":"../../etc","tags":{"Modality":"MR"}}`, http.StatusBadRequest, 0, "error"},
		{"unknown model", testToken, `{"series_id":"` + seriesID + `","tags":{"Modality":"MR","SeriesDescription":"T1"},"model":"nope"}`, http.StatusBadRequest, 0, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, q, o := setup(t)
			code, out := do(s, http.MethodPost, "/v1/events/orthanc", tt.token, tt.body)
			if code != tt.wantCode {
				t.Fatalf("code %d, want %d (%v)", code, tt.wantCode, out)
			}
			if _, ok := out[tt.wantField]; !ok {
				t.Errorf("answer %v has no %q", out, tt.wantField)
			}
			if len(q.jobs) != tt.wantJobs {
				t.Errorf("%d jobs queued, want %d", len(q.jobs), tt.wantJobs)
			}
			if o.calls != 0 {
				t.Errorf("the webhook called Orthanc %d times: Orthanc's REST API is blocked while Lua waits", o.calls)
			}
		})
	}
}

func TestServer_UnknownSeriesIs404(t *testing.T) {
	s, q, _ := setup(t)
	for _, path := range []string{"/v1/series/" + seriesID + "/segment", "/v1/series/nope/segment"} {
		code, out := do(s, http.MethodPost, path, "", "")
		if code != http.StatusNotFound || out["error"] == "" {
			t.Errorf("POST %s: %d %v, want 404 with a message", path, code, out)
		}
	}
	if len(q.jobs) != 0 {
		t.Errorf("%d jobs queued for unknown series", len(q.jobs))
	}
}

func TestServer_ManualTrigger(t *testing.T) {
	s, q, o := setup(t)
	o.series[seriesID] = &orthanc.Series{ID: seriesID, MainDicomTags: map[string]string{"Modality": "MR", "SeriesDescription": "FLAIR"}}
	code, out := do(s, http.MethodPost, "/v1/series/"+seriesID+"/segment", "", "")
	if code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(out["error"]), "force=true") {
		t.Fatalf("a series the model's rules refuse: %d %v, want 422 naming force", code, out)
	}
	code, out = do(s, http.MethodPost, "/v1/series/"+seriesID+"/segment?force=true", "", "")
	if code != http.StatusAccepted || out["state"] != "queued" || len(q.jobs) != 1 {
		t.Fatalf("forced: %d %v", code, out)
	}
	o.series[seriesID].MainDicomTags["Modality"] = "SEG"
	if code, _ := do(s, http.MethodPost, "/v1/series/"+seriesID+"/segment?force=true", "", ""); code != http.StatusUnprocessableEntity {
		t.Fatalf("a SEG series: %d, want 422", code)
	}
}

// TestServer_GetNeverWrites: a series whose SEG Orthanc holds shows done,
// and asking does not write any job state.
func TestServer_GetNeverWrites(t *testing.T) {
	s, q, o := setup(t)
	o.series[seriesID] = &orthanc.Series{ID: seriesID, MainDicomTags: map[string]string{"Modality": "MR", "SeriesDescription": "T1"}}
	o.segs[seriesID] = &orthanc.SEGRef{SeriesID: "segseries", InstanceID: "seginstance"}
	for i := 0; i < 3; i++ {
		code, out := do(s, http.MethodGet, "/v1/series/"+seriesID, "", "")
		jobs, _ := out["jobs"].([]any)
		if code != http.StatusOK || out["state"] != "done" || len(jobs) != 1 {
			t.Fatalf("GET: %d %v", code, out)
		}
		if j := jobs[0].(map[string]any); j["source"] != "orthanc" || j["seg_series_id"] != "segseries" {
			t.Fatalf("job %v", j)
		}
	}
	if q.writes != 0 {
		t.Fatalf("GET wrote job state %d times", q.writes)
	}
}

func TestServer_MetricsCountSkips(t *testing.T) {
	s, _, _ := setup(t)
	do(s, http.MethodPost, "/v1/events/orthanc", testToken, `{"series_id":"`+seriesID+`","tags":{"Modality":"CT"}}`)
	do(s, http.MethodPost, "/v1/events/orthanc", testToken, `{"series_id":"`+seriesID+`","tags":{"Modality":"MR","SeriesDescription":"T1"}}`)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	for _, want := range []string{
		`segbridge_series_skipped_total{reason="modality_not_configured",trigger="webhook"} 1`,
		`segbridge_jobs_queued_total{trigger="webhook"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, rec.Body.String())
		}
	}
}

func TestServer_APITokenWhenSet(t *testing.T) {
	s, _, _ := setupWith(t, Config{APIToken: "api-token-api-token"})
	if code, _ := do(s, http.MethodGet, "/v1/jobs", "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/jobs without token: %d, want 401", code)
	}
	if code, _ := do(s, http.MethodGet, "/v1/jobs", "api-token-api-token", ""); code != http.StatusOK {
		t.Errorf("GET /v1/jobs with token: %d, want 200", code)
	}
	if code, _ := do(s, http.MethodGet, "/api/mri/segmentation/requests/", "", ""); code != http.StatusUnauthorized {
		t.Errorf("Django alias without token: %d, want 401", code)
	}
}

// TestParseWebhookEvent_Instances: the instance count Orthanc's Lua sends,
// as a number, a number with a fraction of zero or a string; anything else
// is a 400.
func TestParseWebhookEvent_Instances(t *testing.T) {
	for raw, want := range map[string]int{"": 0, `181`: 181, `181.0`: 181, `"181"`: 181, `0`: 0} {
		body := `{"event":"StableSeries","series_id":"` + seriesID + `","tags":{"Modality":"MR"}`
		if raw != "" {
			body += `,"instances":` + raw
		}
		ev, err := ParseWebhookEvent([]byte(body + "}"))
		if err != nil || ev.Instances != want {
			t.Errorf("instances %s: %+v %v, want %d", raw, ev, err, want)
		}
	}
	for _, raw := range []string{`-1`, `1.5`, `"x"`, `1e9`, `true`, `{}`} {
		body := `{"event":"StableSeries","series_id":"` + seriesID + `","instances":` + raw + `}`
		if _, err := ParseWebhookEvent([]byte(body)); err == nil || !strings.Contains(err.Error(), "not a count") {
			t.Errorf("instances %s: %v, want refused", raw, err)
		}
	}
}

func FuzzParseWebhookEvent(f *testing.F) {
	f.Add([]byte(`{"event":"StableSeries","series_id":"` + seriesID + `","tags":{"Modality":"MR"}}`))
	f.Add([]byte(`{"event":"StableSeries","series_id":"` + seriesID + `","instances":12.0}`))
	f.Add([]byte(`{"series_id":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"tags":{"Modality":1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseWebhookEvent(body)
		if err == nil && !orthanc.ValidID(ev.SeriesID) {
			t.Fatalf("accepted an event with series id %q", ev.SeriesID)
		}
	})
}
