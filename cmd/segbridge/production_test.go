package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/codec"
	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanctest"
)

// TestMain lets a test start the segbridge binary as a separate OS process
// without building it: the test binary re-executes itself with
// SEGBRIDGE_TEST_EXEC_MAIN=1 and runs main() with its arguments.
func TestMain(m *testing.M) {
	// The JPEG 2000 decoder children of `segbridge serve` run in-process
	// here are this test binary re-executed.
	codec.RunIfChild()
	if os.Getenv("SEGBRIDGE_TEST_EXEC_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// process is `segbridge <args>` running as its own OS process.
type process struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

func startProcess(t *testing.T, env map[string]string, args ...string) *process {
	t.Helper()
	p := &process{logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = []string{"SEGBRIDGE_TEST_EXEC_MAIN=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("segbridge %s log:\n%s", strings.Join(args, " "), tail(p.logs.String(), 4000))
		}
	})
	return p
}

// api sends an API request with the system's API token.
func (s *system) api(t *testing.T, method, path string, out any) int {
	t.Helper()
	return s.call(t, method, path, s.env["SEGBRIDGE_API_TOKEN"], nil, out)
}

func (s *system) job(t *testing.T, id string) jobView {
	t.Helper()
	var v jobView
	s.api(t, http.MethodGet, "/v1/jobs/"+id, &v)
	return v
}

func (s *system) jobs(t *testing.T, state string) []jobView {
	t.Helper()
	var out struct{ Jobs []jobView }
	if code := s.api(t, http.MethodGet, "/v1/jobs?limit=10000&state="+state, &out); code != http.StatusOK {
		t.Fatalf("GET /v1/jobs: %d", code)
	}
	return out.Jobs
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// copySeries makes a new series in Orthanc from an existing one (new UIDs,
// same pixels), which is much faster than generating one.
func copySeries(t *testing.T, o *orthanctest.Server, id string, n int) string {
	t.Helper()
	body := fmt.Sprintf(`{"Replace":{"SeriesDescription":"copy %d"}}`, n)
	req, _ := http.NewRequest(http.MethodPost, o.URL+"/series/"+id+"/modify", strings.NewReader(body))
	req.SetBasicAuth(o.User, o.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.ID == "" {
		t.Fatalf("modify series: %d %v", resp.StatusCode, err)
	}
	return out.ID
}

// TestProduction_QueueSurvivesRestarts covers, on one installation: 50 jobs
// queued by a bridge without workers, which is stopped and started again
// with workers (all 50 done, none twice); a series stored while the bridge
// is down (found by the reconciler); the Django paths (wait, then 202; the
// result once done); 20 concurrent triggers (one job, one SEG); tokens,
// bodies and unknown series; /metrics; and Orthanc down for 20 s while a job
// waits (it retries and succeeds).
func TestProduction_QueueSurvivesRestarts(t *testing.T) {
	s := setupSystem(t, map[string]string{
		"SEGBRIDGE_WORKERS":            "0",
		"SEGBRIDGE_API_TOKEN":          randomToken(),
		"SEGBRIDGE_RECONCILE_INTERVAL": "1s",
		"SEGBRIDGE_DJANGO_WAIT":        "2s",
		"SEGBRIDGE_ACK_WAIT":           "3s",
		"SEGBRIDGE_RETRY_DELAY":        "1s",
		"SEGBRIDGE_MAX_ATTEMPTS":       "10",
		"SEGBRIDGE_ORT_THREADS":        "1",
	})
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "8", "--patient-id", "P", "--seed", "5")
	base := s.upload(t, src.Dir)
	all := []string{base}
	for i := 1; i < 50; i++ {
		all = append(all, copySeries(t, s.orthanc, base, i))
	}
	waitFor(t, 90*time.Second, "50 jobs queued by the webhook", func() bool { return len(s.jobs(t, "queued")) == 50 })

	t.Run("tokens, bodies and unknown series", func(t *testing.T) {
		for _, tok := range []string{"", "wrong-token-wrong-token"} {
			for _, p := range []string{"/v1/series/" + base + "/segment", "/api/mri/segmentation/series/" + base + "/segment/"} {
				var e struct{ Error string }
				if code := s.call(t, http.MethodPost, p, tok, nil, &e); code != http.StatusUnauthorized || e.Error == "" {
					t.Errorf("POST %s with token %q: %d %q, want 401", p, tok, code, e.Error)
				}
			}
		}
		if n := len(s.jobs(t, "")); n != 50 {
			t.Errorf("%d jobs after rejected triggers, want 50", n)
		}
		var e struct{ Error string }
		if code := s.call(t, http.MethodPost, "/v1/events/orthanc", s.token, []byte(`[1,2`), &e); code != http.StatusBadRequest || e.Error == "" {
			t.Errorf("malformed webhook body: %d %q", code, e.Error)
		}
		if code := s.call(t, http.MethodPost, "/v1/events/orthanc", s.token, bytes.Repeat([]byte(" "), 2<<20), &e); code != http.StatusRequestEntityTooLarge {
			t.Errorf("2 MiB webhook body: %d, want 413", code)
		}
		for _, p := range []string{"/v1/series/00000000-00000000-00000000-00000000-00000000/segment", "/api/mri/segmentation/series/00000000-00000000-00000000-00000000-00000000/segment/", "/api/mri/segmentation/series/1.2.3.4/segment/"} {
			if code := s.api(t, http.MethodPost, p, &e); code != http.StatusNotFound || e.Error == "" {
				t.Errorf("POST %s: %d %q, want 404", p, code, e.Error)
			}
		}
		if code := s.api(t, http.MethodGet, "/api/mri/segmentation/status/nope/", &e); code != http.StatusNotFound {
			t.Errorf("unknown request id: %d", code)
		}
	})

	var pending djangoView
	t.Run("django segment waits, then answers 202 with a request_id", func(t *testing.T) {
		start := time.Now()
		code := s.api(t, http.MethodPost, "/api/mri/segmentation/series/"+base+"/segment/", &pending)
		if code != http.StatusAccepted || pending.RequestID == "" || pending.Status != "pending" {
			t.Fatalf("answered %d %+v, want 202 pending", code, pending)
		}
		if took := time.Since(start); took < 1900*time.Millisecond {
			t.Errorf("answered after %s, want the 2 s wait", took)
		}
		var st djangoView
		if code := s.api(t, http.MethodGet, "/api/mri/segmentation/status/"+pending.RequestID+"/", &st); code != http.StatusOK || st.Status != "pending" || st.SeriesID != base {
			t.Errorf("status: %d %+v", code, st)
		}
		var list struct {
			Count    int
			Requests []djangoView
		}
		if code := s.api(t, http.MethodGet, "/api/mri/segmentation/requests/?status=pending", &list); code != http.StatusOK || list.Count != 50 {
			t.Errorf("requests: %d count %d, want 50", code, list.Count)
		}
	})

	// Stop the bridge; store a series while it is down (Orthanc's Lua post
	// fails); start it again with workers.
	s.stopServe(t)
	late := copySeries(t, s.orthanc, base, 99)
	waitStable(t, s.orthanc, late)
	start := time.Now()
	s.restartServe(t, map[string]string{"SEGBRIDGE_WORKERS": "2"})
	all = append(all, late)

	t.Run("all 50 queued jobs and the series stored while down complete, none twice", func(t *testing.T) {
		waitFor(t, 180*time.Second, "51 jobs done", func() bool { return len(s.jobs(t, "done")) == 51 })
		t.Logf("51 jobs done %s after the restart", time.Since(start).Round(time.Millisecond))
		for _, j := range s.jobs(t, "") {
			if j.Generation != 1 {
				t.Errorf("job %s generation %d", j.ID, j.Generation)
			}
			if j.SeriesID == late && j.Trigger != "reconciler" {
				t.Errorf("the series stored while the bridge was down was queued by %q, want reconciler", j.Trigger)
			}
		}
		// All copies share one study: 51 sources, 51 SEGs, one per job.
		segOf := map[string]string{}
		for _, j := range s.jobs(t, "done") {
			segOf[j.SEGSeriesID] = j.SeriesID
		}
		for _, id := range all {
			if _, ok := segOfSource(segOf)[id]; !ok {
				t.Errorf("series %s has no done job", id)
			}
		}
		if len(segOf) != 51 {
			t.Errorf("51 done jobs name %d different SEG series", len(segOf))
		}
		if segs := s.segSeriesOf(t, base); len(segs) != 51 {
			t.Errorf("study has %d SEG series, want 51", len(segs))
		}
	})

	t.Run("django paths answer the result once done", func(t *testing.T) {
		var v djangoView
		if code := s.api(t, http.MethodPost, "/api/mri/segmentation/series/"+base+"/segment", &v); code != http.StatusOK || v.Status != "completed" || v.SEGSeriesID == "" || !v.Success {
			t.Fatalf("answered %d %+v, want 200 completed", code, v)
		}
		var st djangoView
		if code := s.api(t, http.MethodGet, "/api/mri/segmentation/status/"+pending.RequestID+"/", &st); code != http.StatusOK || st.Status != "completed" || st.SEGURL == "" {
			t.Errorf("status: %d %+v", code, st)
		}
	})

	t.Run("20 concurrent triggers make one job and one SEG", func(t *testing.T) {
		ser := fixture.MakeSeries(t, false, "--plane", "coronal", "--step", "8", "--patient-id", "Q", "--seed", "6")
		id := s.upload(t, ser.Dir)
		var wg sync.WaitGroup
		ids := make(chan string, 20)
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var v jobView
				code := s.api(t, http.MethodPost, "/v1/series/"+id+"/segment", &v)
				if code != http.StatusAccepted && code != http.StatusOK {
					t.Errorf("trigger: %d", code)
				}
				ids <- fmt.Sprintf("%s#%d", v.ID, v.Generation)
			}()
		}
		wg.Wait()
		close(ids)
		seen := map[string]bool{}
		for x := range ids {
			seen[x] = true
		}
		if len(seen) != 1 {
			t.Fatalf("triggers answered %d different jobs: %v", len(seen), seen)
		}
		waitFor(t, 60*time.Second, "job done", func() bool {
			_, v := s.seriesStatusTok(t, id)
			return v.State == "done"
		})
		waitStable(t, s.orthanc, id)
		if segs := s.segSeriesOf(t, id); len(segs) != 1 {
			t.Fatalf("%d SEG series, want 1", len(segs))
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get(s.bridge + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"segbridge_queue_depth 0", `segbridge_jobs{state="done"} 52`, `segbridge_stage_duration_seconds_count{stage="inference"}`, `segbridge_webhook_duration_seconds_bucket{code="202",le="+Inf"}`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("metrics lack %q:\n%s", want, b)
			}
		}
	})

	t.Run("Orthanc down for 20 s while a job waits: it retries and succeeds", func(t *testing.T) {
		// A new series, then Orthanc stops before declaring it stable (that
		// event is lost); the event is posted by hand while Orthanc is down,
		// so the worker's requests fail and the job goes back to the queue
		// with a delay until Orthanc is back.
		before := len(s.segSeriesOf(t, base)) // the copies share one study
		id := copySeries(t, s.orthanc, base, 200)
		s.orthanc.Stop()
		down := time.Now()
		var v jobView
		ev := []byte(`{"event":"StableSeries","series_id":"` + id + `","tags":{"Modality":"MR"}}`)
		if code := s.call(t, http.MethodPost, "/v1/events/orthanc", s.token, ev, &v); code != http.StatusAccepted {
			t.Fatalf("webhook: %d %+v", code, v)
		}
		waitFor(t, 30*time.Second, "a failed attempt", func() bool {
			j := s.job(t, v.ID)
			return strings.Contains(j.Error, "attempt") || j.State == "done"
		})
		time.Sleep(20*time.Second - time.Since(down))
		s.orthanc.Restart()
		waitFor(t, 90*time.Second, "job done after Orthanc came back", func() bool {
			j := s.job(t, v.ID)
			if j.State == "failed" {
				t.Fatalf("job failed: %s", j.Error)
			}
			return j.State == "done"
		})
		if segs := s.segSeriesOf(t, id); len(segs) != before+1 {
			t.Fatalf("the study has %d SEG series, want %d: one more", len(segs), before+1)
		}
	})
}

func segOfSource(segOf map[string]string) map[string]string {
	out := map[string]string{}
	for seg, src := range segOf {
		out[src] = seg
	}
	return out
}

type djangoView struct {
	Success     bool    `json:"success"`
	RequestID   string  `json:"request_id"`
	Status      string  `json:"status"`
	SeriesID    string  `json:"series_id"`
	SEGSeriesID string  `json:"seg_series_id"`
	SEGURL      string  `json:"seg_url"`
	Error       string  `json:"error"`
	Progress    float64 `json:"progress"`
}

func (s *system) seriesStatusTok(t *testing.T, id string) (int, seriesView) {
	var v seriesView
	code := s.api(t, http.MethodGet, "/v1/series/"+id, &v)
	return code, v
}

// TestProduction_RemoteWorkerKilled runs the bridge without workers, its
// NATS open on loopback, and `segbridge worker` as separate OS processes
// connecting over TCP with their own token: a wrong token is refused; a
// worker killed with SIGKILL in the middle of a job loses its lease, the job
// is redelivered to another worker and completes, with exactly one SEG. Then
// the bridge loses its data directory: Orthanc still says the series is
// done, and a trigger answers done without a job.
func TestProduction_RemoteWorkerKilled(t *testing.T) {
	natsAddr := fmt.Sprintf("127.0.0.1:%d", orthanctest.FreePort(t))
	workerToken := randomToken()
	s := setupSystem(t, map[string]string{
		"SEGBRIDGE_WORKERS":     "0",
		"SEGBRIDGE_NATS_LISTEN": natsAddr,
		"SEGBRIDGE_NATS_TOKEN":  workerToken,
		"SEGBRIDGE_ACK_WAIT":    "3s",
		// slow-slices runs one slice at a time, some seconds for this
		// series: the kill finds the worker mid-job however fast the
		// machine (the reference model takes 0.2 s, less than a poll).
		"MODEL_PATH": filepath.Join(fixture.Root(t), "testdata/models/slow-slices.yaml"),
	})
	workerEnv := func(token string) map[string]string {
		return map[string]string{
			"ORTHANC_URL":           s.orthanc.URL,
			"ORTHANC_USER":          s.orthanc.User,
			"ORTHANC_PASSWORD":      s.orthanc.Password,
			"SEGBRIDGE_NATS_URL":    "nats://" + natsAddr,
			"SEGBRIDGE_NATS_TOKEN":  token,
			"SEGBRIDGE_ACK_WAIT":    "3s",
			"MODEL_PATH":            s.env["MODEL_PATH"],
			"SEGBRIDGE_ORT_LIB":     s.env["SEGBRIDGE_ORT_LIB"],
			"SEGBRIDGE_ORT_THREADS": "1",
			"SEGBRIDGE_LOG_FORMAT":  "json",
			"SEGBRIDGE_LOG_LEVEL":   "debug",
		}
	}

	t.Run("wrong credentials are refused", func(t *testing.T) {
		p := startProcess(t, workerEnv("wrong-token-wrong-token-wrong"), "worker")
		select {
		case err := <-p.done:
			if err == nil || !strings.Contains(strings.ToLower(p.logs.String()), "authorization") {
				t.Fatalf("worker with a wrong token: %v\n%s", err, p.logs.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("worker with a wrong token kept running")
		}
	})

	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "K", "--seed", "7")
	first := startProcess(t, workerEnv(workerToken), "worker")
	id := s.upload(t, src.Dir)
	var jobID, stage string
	waitFor(t, 60*time.Second, "a remote worker running the job", func() bool {
		_, v := s.seriesStatus(t, id)
		if len(v.Jobs) == 0 {
			return false
		}
		jobID = v.Jobs[0].ID
		j := s.job(t, jobID)
		stage = j.Stage
		if j.State == "done" {
			t.Fatalf("job finished before the worker could be killed")
		}
		return j.State == "running" && (stage == "inference" || stage == "volume" || stage == "encode")
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	t.Logf("killed the worker during stage %q", stage)
	startProcess(t, workerEnv(workerToken), "worker")
	v := s.waitDone(t, id, 90*time.Second)
	j := s.job(t, jobID)
	if j.Generation != 1 {
		t.Errorf("generation %d, want 1 (redelivered, not requeued)", j.Generation)
	}
	var attempts struct{ Attempts int }
	s.call(t, http.MethodGet, "/v1/jobs/"+jobID, "", nil, &attempts)
	if attempts.Attempts < 2 {
		t.Errorf("attempts %d, want the job redelivered", attempts.Attempts)
	}
	waitStable(t, s.orthanc, id)
	if segs := s.segSeriesOf(t, id); len(segs) != 1 || segs[0] != v.Jobs[0].SEGSeriesID {
		t.Fatalf("SEG series %v, want exactly %s", segs, v.Jobs[0].SEGSeriesID)
	}
	s.checkSEG(t, v.Jobs[0].SEGSeriesID, src)

	t.Run("the outcome is recorded on the source series in Orthanc", func(t *testing.T) {
		b, err := s.orthanc.Get(context.Background(), "/series/"+id+"/metadata/segbridge")
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			State       string `json:"state"`
			SEGSeriesID string `json:"seg_series_id"`
		}
		if err := json.Unmarshal(b, &rec); err != nil || rec.State != "done" || rec.SEGSeriesID != v.Jobs[0].SEGSeriesID {
			t.Fatalf("metadata %s: %v", b, err)
		}
	})

	t.Run("with its data lost the bridge still knows the series is done", func(t *testing.T) {
		s.restartServe(t, map[string]string{"SEGBRIDGE_DATA_DIR": filepath.Join(t.TempDir(), "fresh")})
		code, sv := s.seriesStatus(t, id)
		if code != http.StatusOK || sv.State != "done" || len(sv.Jobs) != 1 || sv.Jobs[0].SEGSeriesID != v.Jobs[0].SEGSeriesID {
			t.Fatalf("status %d %+v, want done with the SEG from Orthanc", code, sv)
		}
		var tv jobView
		if code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment", "", nil, &tv); code != http.StatusOK || tv.State != "done" {
			t.Fatalf("trigger %d %+v, want 200 done", code, tv)
		}
		var q struct{ Jobs []jobView }
		s.call(t, http.MethodGet, "/v1/jobs?state=queued", "", nil, &q)
		if len(q.Jobs) != 0 {
			t.Fatalf("a trigger for a done series queued %v", q.Jobs)
		}
	})
}
