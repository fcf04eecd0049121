package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanctest"
)

// system is one complete segbridge installation for a test: a real Orthanc
// running the project's Lua script, and `segbridge serve` (embedded NATS
// JetStream, one in-process worker, the real ONNX Runtime) run through the
// same entry point as the binary.
type system struct {
	orthanc  *orthanctest.Server
	bridge   string
	token    string
	logs     *syncBuffer
	env      map[string]string
	stopOnce *sync.Once
	stop     func()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func setupSystem(t *testing.T, extraEnv map[string]string) *system {
	t.Helper()
	return setupSystemWith(t, extraEnv, nil)
}

// setupSystemWith is setupSystem with extra Orthanc configuration (e.g.
// "Plugins").
func setupSystemWith(t *testing.T, extraEnv map[string]string, orthancExtra map[string]any) *system {
	t.Helper()
	root := fixture.Root(t)
	bridgePort := orthanctest.FreePort(t)
	s := &system{token: randomToken(), logs: &syncBuffer{}}
	s.bridge = fmt.Sprintf("http://127.0.0.1:%d", bridgePort)
	extra := map[string]any{"Segbridge": map[string]any{
		"Url": s.bridge, "Token": s.token, "Modalities": []string{"MR"},
	}}
	for k, v := range orthancExtra {
		// A "Segbridge" section adds to the one made here (Url, Token).
		if sec, ok := v.(map[string]any); ok && k == "Segbridge" {
			for sk, sv := range sec {
				extra["Segbridge"].(map[string]any)[sk] = sv
			}
			continue
		}
		extra[k] = v
	}
	s.orthanc = orthanctest.Start(t, orthanctest.Options{
		StableAge:  2,
		LuaScripts: []string{filepath.Join(root, "orthanc-lua/segbridge.lua")},
		Extra:      extra,
	})
	env := map[string]string{
		"ORTHANC_URL":             s.orthanc.URL,
		"ORTHANC_USER":            s.orthanc.User,
		"ORTHANC_PASSWORD":        s.orthanc.Password,
		"SEGBRIDGE_LISTEN":        fmt.Sprintf("127.0.0.1:%d", bridgePort),
		"SEGBRIDGE_WEBHOOK_TOKEN": s.token,
		"SEGBRIDGE_DATA_DIR":      t.TempDir(),
		"MODEL_PATH":              filepath.Join(root, "testdata/models/head-threshold.yaml"),
		"SEGBRIDGE_ORT_LIB":       fixture.ORTLibrary(t),
		"SEGBRIDGE_LOG_FORMAT":    "json",
		"SEGBRIDGE_LOG_LEVEL":     "debug",
	}
	for k, v := range extraEnv {
		env[k] = v
	}
	s.env = env
	t.Cleanup(func() {
		s.stopServe(t)
		if t.Failed() {
			t.Logf("segbridge log:\n%s", tail(s.logs.String(), 6000))
			t.Logf("orthanc log:\n%s", tail(s.orthanc.Log(), 3000))
		}
	})
	s.startServe(t)
	return s
}

// startServe runs `segbridge serve` with s.env through run() and waits
// until it answers /healthz.
func (s *system) startServe(t *testing.T) {
	t.Helper()
	env := s.env
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve"}, func(k string) string { return env[k] }, io.Discard, s.logs)
	}()
	s.stopOnce = &sync.Once{}
	s.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Errorf("serve did not stop within 40 s")
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.bridge + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge did not answer /healthz\n%s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopServe stops `segbridge serve` (as SIGTERM would); safe to call twice.
func (s *system) stopServe(t *testing.T) {
	t.Helper()
	if s.stopOnce != nil {
		s.stopOnce.Do(s.stop)
	}
}

// restartServe stops serve and starts it again with env changes (an empty
// value removes a variable), on the same Orthanc.
func (s *system) restartServe(t *testing.T, changes map[string]string) {
	t.Helper()
	s.stopServe(t)
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	for k, v := range changes {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	s.env = env
	s.startServe(t)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// call sends a request to the bridge and decodes a JSON answer.
func (s *system) call(t *testing.T, method, path, token string, body []byte, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, s.bridge+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: answer %d is not JSON: %q", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

type jobView struct {
	ID          string             `json:"id"`
	SeriesID    string             `json:"series_id"`
	State       string             `json:"state"`
	Stage       string             `json:"stage"`
	Attempts    int                `json:"attempts"`
	StartedAt   string             `json:"started_at"`
	Trigger     string             `json:"trigger"`
	Generation  int                `json:"generation"`
	Error       string             `json:"error"`
	SEGSeriesID string             `json:"seg_series_id"`
	SEGURL      string             `json:"seg_url"`
	Timings     map[string]float64 `json:"timings_ms"`
}

type seriesView struct {
	SeriesID string    `json:"series_id"`
	State    string    `json:"state"`
	Jobs     []jobView `json:"jobs"`
	Error    string    `json:"error"`
	Warning  string    `json:"warning"`
}

func (s *system) seriesStatus(t *testing.T, id string) (int, seriesView) {
	var v seriesView
	code := s.call(t, http.MethodGet, "/v1/series/"+id, "", nil, &v)
	return code, v
}

// waitDone polls the status until the series' job is done or failed.
func (s *system) waitDone(t *testing.T, id string, within time.Duration) seriesView {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, v := s.seriesStatus(t, id)
		if code == http.StatusOK && (v.State == "done" || v.State == "failed") {
			if v.State == "failed" {
				t.Fatalf("job failed: %+v", v.Jobs)
			}
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("series %s not done within %s: %d %+v", id, within, code, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// segSeriesOf lists the SEG series in the study of a source series.
func (s *system) segSeriesOf(t *testing.T, seriesID string) []string {
	t.Helper()
	ctx := context.Background()
	var ser struct{ ParentStudy string }
	if err := s.orthanc.GetJSON(ctx, "/series/"+seriesID, &ser); err != nil {
		t.Fatal(err)
	}
	var all []struct {
		ID            string
		MainDicomTags map[string]string
	}
	if err := s.orthanc.GetJSON(ctx, "/studies/"+ser.ParentStudy+"/series", &all); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range all {
		if x.MainDicomTags["Modality"] == "SEG" {
			out = append(out, x.ID)
		}
	}
	return out
}

func (s *system) upload(t *testing.T, dir string) string {
	t.Helper()
	ids, err := s.orthanc.Upload(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 {
		t.Fatalf("upload made %d series, want 1", len(ids))
	}
	return ids[0]
}

// checkSEG downloads the SEG, validates it with dciodvfy and reads it back
// with pydicom: every frame must sit on, and reference, its source slice,
// and the mask must be the head on the source grid.
func (s *system) checkSEG(t *testing.T, segSeriesID string, src *fixture.Series) {
	t.Helper()
	path := s.segFile(t, segSeriesID)
	errs, warns := fixture.Dciodvfy(t, path)
	if len(errs) > 0 {
		t.Errorf("dciodvfy errors:\n%s", strings.Join(errs, "\n"))
	}
	for _, w := range warns {
		t.Logf("dciodvfy: %s", w)
	}

	got := fixture.ReadSEG(t, path)
	tr := src.Truth
	if got.Rows != tr.Rows || got.Cols != tr.Cols {
		t.Fatalf("SEG frames are %dx%d, source slices %dx%d", got.Cols, got.Rows, tr.Cols, tr.Rows)
	}
	if got.ReferencedSeries.UID != tr.SeriesInstanceUID || len(got.ReferencedSeries.Instances) != tr.Depth {
		t.Errorf("ReferencedSeriesSequence names %s with %d instances, want %s with %d",
			got.ReferencedSeries.UID, len(got.ReferencedSeries.Instances), tr.SeriesInstanceUID, tr.Depth)
	}
	sliceOf := map[string]int{}
	for k, sl := range tr.Slices {
		sliceOf[sl.SOPInstanceUID] = k
	}
	plane := tr.Rows * tr.Cols
	mask := make([]uint8, plane*tr.Depth)
	for f, fr := range got.Frames {
		k, ok := sliceOf[fr.RefSOPInstanceUID]
		if !ok {
			t.Fatalf("frame %d references %s, not a source instance", f+1, fr.RefSOPInstanceUID)
		}
		if fr.IPP != tr.Slices[k].IPP {
			t.Fatalf("frame %d: ImagePositionPatient %v, but its source slice %s is at %v", f+1, fr.IPP, fr.RefSOPInstanceUID, tr.Slices[k].IPP)
		}
		copy(mask[k*plane:(k+1)*plane], got.Pixels[f*plane:(f+1)*plane])
	}
	// The reference model marks the head: ch2's air is exactly 0.
	head := make([]uint8, len(src.Values))
	for i, v := range src.Values {
		if v > 0 {
			head[i] = 1
		}
	}
	if d := fixture.Dice(mask, head); d < 0.97 {
		t.Errorf("Dice of the SEG against the head (ch2 > 0) on the source grid = %.4f, want >= 0.97", d)
	} else {
		t.Logf("Dice against ch2 > 0: %.4f", d)
	}
}

func TestServe_EndToEnd(t *testing.T) {
	s := setupSystem(t, nil)

	// Two different series in two studies: A arrives and is segmented by
	// the Lua path alone; B is triggered by hand at once.
	seriesA := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--shuffle", "--patient-id", "A", "--seed", "1")
	seriesB := fixture.MakeSeries(t, false, "--plane", "sagittal", "--patient-id", "B", "--seed", "2")

	t.Run("an uploaded MR series gets its SEG with no manual step", func(t *testing.T) {
		id := s.upload(t, seriesA.Dir)
		v := s.waitDone(t, id, 90*time.Second)
		job := v.Jobs[0]
		if job.Trigger != "webhook" {
			t.Errorf("job trigger %q, want webhook (the Lua path)", job.Trigger)
		}
		segs := s.segSeriesOf(t, id)
		if len(segs) != 1 || segs[0] != job.SEGSeriesID {
			t.Fatalf("study has SEG series %v, status says %s", segs, job.SEGSeriesID)
		}
		if !strings.Contains(job.SEGURL, job.SEGSeriesID) {
			t.Errorf("seg_url %q does not point at the SEG", job.SEGURL)
		}
		for _, stage := range []string{"download", "volume", "inference", "encode", "upload", "total"} {
			if _, ok := job.Timings[stage]; !ok {
				t.Errorf("no %s timing in %v", stage, job.Timings)
			}
		}
		s.checkSEG(t, job.SEGSeriesID, seriesA)

		// The SEG's own stable event must not start a job: wait until
		// Orthanc has declared the SEG series stable, then look again.
		waitStable(t, s.orthanc, job.SEGSeriesID)
		if segs := s.segSeriesOf(t, id); len(segs) != 1 {
			t.Fatalf("after the SEG became stable the study has %d SEG series, want 1", len(segs))
		}
		code, sv := s.seriesStatus(t, job.SEGSeriesID)
		if code != http.StatusOK || sv.State != "none" || len(sv.Jobs) != 0 {
			t.Fatalf("the SEG series was queued: %d %+v", code, sv)
		}
	})

	t.Run("manual trigger shows queued, running, done", func(t *testing.T) {
		id := s.upload(t, seriesB.Dir)
		var first jobView
		code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment", "", nil, &first)
		// On a slow machine Orthanc's stable event (StableAge 2 s) may come
		// before the trigger: then the trigger joins the webhook's job.
		if code != http.StatusAccepted || (first.State != "queued" && first.State != "running") ||
			(first.Trigger != "manual" && first.Trigger != "webhook") {
			t.Fatalf("trigger answered %d %+v, want 202 queued or running", code, first)
		}
		seen := map[string]bool{first.State: true}
		deadline := time.Now().Add(90 * time.Second)
		var v seriesView
		for {
			_, v = s.seriesStatus(t, id)
			seen[v.State] = true
			if v.State == "done" || v.State == "failed" || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if v.State != "done" {
			t.Fatalf("job ended %s: %+v", v.State, v.Jobs)
		}
		if !seen["running"] {
			t.Errorf("status never showed running (saw %v)", seen)
		}
		job := v.Jobs[0]
		if job.SEGSeriesID == "" || job.SEGURL == "" {
			t.Fatalf("done without SEG id: %+v", job)
		}
		s.checkSEG(t, job.SEGSeriesID, seriesB)

		// Orthanc's stable event for B arrives after the manual job: it
		// joins the done job instead of making a second SEG.
		waitStable(t, s.orthanc, id)
		waitStable(t, s.orthanc, job.SEGSeriesID)
		if segs := s.segSeriesOf(t, id); len(segs) != 1 {
			t.Fatalf("series B has %d SEG series, want 1", len(segs))
		}
		var again jobView
		if code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment", "", nil, &again); code != http.StatusOK || again.State != "done" || again.SEGSeriesID != job.SEGSeriesID {
			t.Fatalf("second trigger answered %d %+v, want 200 done with the same SEG", code, again)
		}
	})

	t.Run("unknown series is a 404 with a message", func(t *testing.T) {
		for _, tc := range []struct{ method, path string }{
			{http.MethodGet, "/v1/series/00000000-00000000-00000000-00000000-00000000"},
			{http.MethodPost, "/v1/series/00000000-00000000-00000000-00000000-00000000/segment"},
			{http.MethodGet, "/v1/series/not-an-id"},
		} {
			var e struct{ Error string }
			if code := s.call(t, tc.method, tc.path, "", nil, &e); code != http.StatusNotFound || e.Error == "" {
				t.Errorf("%s %s = %d %q, want 404 with a message", tc.method, tc.path, code, e.Error)
			}
		}
	})

	t.Run("webhook without the right token is 401 and queues nothing", func(t *testing.T) {
		body := []byte(`{"event":"StableSeries","series_id":"11111111-11111111-11111111-11111111-11111111","tags":{"Modality":"MR"}}`)
		for _, token := range []string{"", "wrong-token-wrong-token"} {
			var e struct{ Error string }
			if code := s.call(t, http.MethodPost, "/v1/events/orthanc", token, body, &e); code != http.StatusUnauthorized || e.Error == "" {
				t.Errorf("token %q: %d %q, want 401 with a message", token, code, e.Error)
			}
		}
		var jobs struct{ Jobs []jobView }
		s.call(t, http.MethodGet, "/v1/jobs", "", nil, &jobs)
		for _, j := range jobs.Jobs {
			if strings.HasPrefix(j.ID, "11111111") {
				t.Fatalf("a rejected webhook queued %s", j.ID)
			}
		}
		var bad struct{ Error string }
		if code := s.call(t, http.MethodPost, "/v1/events/orthanc", s.token, []byte(`{"series_id": 3`), &bad); code != http.StatusBadRequest || bad.Error == "" {
			t.Errorf("malformed body: %d %q, want 400", code, bad.Error)
		}
	})
}

// waitStable waits until Orthanc says a series is stable, plus a moment for
// its Lua callback to have run.
func waitStable(t *testing.T, o *orthanctest.Server, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ser struct{ IsStable bool }
		if err := o.GetJSON(context.Background(), "/series/"+id, &ser); err != nil {
			t.Fatal(err)
		}
		if ser.IsStable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("series %s not stable within 30 s", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Orthanc marks the series stable, then runs the Lua callback; give any
	// job it might start time to appear and finish.
	time.Sleep(3 * time.Second)
}
