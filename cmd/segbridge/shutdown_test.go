package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/queue"
)

// TestServe_StopWithRunningJobAndLongPoll stops `segbridge serve` (as
// SIGTERM does) while its worker is in the middle of a job and the seed's
// long-poll waits on that job: the long-poll is answered 202 with its
// request_id at once, serve returns within 10 s, and once serve runs again
// the job runs again at once. Stopped twice more mid-job, three stops in all
// against SEGBRIDGE_MAX_ATTEMPTS=2, it still ends done, with exactly one
// SEG: a stop is not the job's fault and uses up none of its attempts.
func TestServe_StopWithRunningJobAndLongPoll(t *testing.T) {
	root := fixture.Root(t)
	// slow-slices takes some seconds for this series, one slice at a time:
	// the stop finds it in its inference stage.
	s := setupSystem(t, map[string]string{
		"MODEL_PATH":             filepath.Join(root, "testdata/models/slow-slices.yaml"),
		"SEGBRIDGE_ORT_THREADS":  "1",
		"SEGBRIDGE_MAX_ATTEMPTS": "2",
	})
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "STOP", "--seed", "12")
	id := s.upload(t, src.Dir)
	jobID := queue.JobID(id, "slow-slices", "1.0.0")

	// Orthanc's stable event queues the job (Lua webhook); wait until the
	// worker runs the model.
	// inInference waits for an attempt that started after the one before
	// (its started_at differs), in its inference stage.
	started := ""
	inInference := func() {
		t.Helper()
		waitFor(t, 60*time.Second, "the job in its inference stage", func() bool {
			j := s.job(t, jobID)
			if j.State == "done" || j.State == "failed" {
				t.Fatalf("the job ended (%s: %s) before the stop: make it slower", j.State, j.Error)
			}
			if j.State == "running" && j.Stage == "inference" && j.StartedAt != started {
				started = j.StartedAt
				return true
			}
			return false
		})
	}
	inInference()

	type answer struct {
		code int
		body djangoView
		err  error
		at   time.Time
	}
	answered := make(chan answer, 1)
	go func() {
		var a answer
		resp, err := http.Post(s.bridge+"/api/mri/segmentation/series/"+id+"/segment/", "application/json", nil)
		a.at = time.Now()
		if err != nil {
			a.err = err
			answered <- a
			return
		}
		defer resp.Body.Close()
		a.code = resp.StatusCode
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &a.body); err != nil {
			a.err = err
		}
		answered <- a
	}()
	waitFor(t, 30*time.Second, "the long-poll waiting", func() bool {
		for _, line := range strings.Split(s.logs.String(), "\n") {
			var rec struct{ Message, Job string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Message == "long-poll waiting" && rec.Job == jobID {
				return true
			}
		}
		return false
	})
	if j := s.job(t, jobID); j.State != "running" {
		t.Fatalf("the job is %s, want running when serve stops", j.State)
	}

	stopped := time.Now()
	s.stopServe(t)
	took := time.Since(stopped)
	t.Logf("serve returned %s after the stop", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("serve returned %s after the stop, want within 10 s", took)
	}
	select {
	case a := <-answered:
		if a.err != nil {
			t.Fatalf("long-poll: %v", a.err)
		}
		if a.code != http.StatusAccepted || a.body.RequestID != jobID || (a.body.Status != "processing" && a.body.Status != "pending") {
			t.Fatalf("long-poll answered %d %+v, want 202 with request_id %s", a.code, a.body, jobID)
		}
		if wait := a.at.Sub(stopped); wait > 3*time.Second {
			t.Errorf("long-poll answered %s after the stop, want at once", wait)
		} else {
			t.Logf("long-poll answered 202 %s after the stop", wait.Round(time.Millisecond))
		}
	default:
		t.Fatal("serve returned and the long-poll has no answer")
	}

	// Two more stops mid-job: with the first, three against two attempts.
	for i := 2; i <= 3; i++ {
		restarted := time.Now()
		s.startServe(t)
		inInference()
		t.Logf("stop %d: the job was back in its inference stage %s after serve started again",
			i, time.Since(restarted).Round(time.Millisecond))
		s.stopServe(t)
	}

	restarted := time.Now()
	s.startServe(t)
	v := s.waitDone(t, id, 120*time.Second)
	// The worker hands the job back as it stops, so it runs again at once
	// rather than when its lease (SEGBRIDGE_ACK_WAIT, 60 s) runs out.
	took = time.Since(restarted)
	t.Logf("the job was done %s after serve started again (a full run takes some seconds; the lease is 60 s)",
		took.Round(time.Millisecond))
	if took > 45*time.Second {
		t.Errorf("done %s after the restart: the hand-back was lost and the job waited out its lease", took)
	}
	j := s.job(t, jobID)
	if j.Attempts != 1 {
		t.Errorf("attempts %d, want 1: the stops used up none", j.Attempts)
	}
	if j.Generation != 1 {
		t.Errorf("generation %d, want 1 (redelivered, not queued again)", j.Generation)
	}
	waitStable(t, s.orthanc, v.Jobs[0].SEGSeriesID)
	if segs := s.segSeriesOf(t, id); len(segs) != 1 || segs[0] != v.Jobs[0].SEGSeriesID {
		t.Fatalf("SEG series %v, want exactly %s", segs, v.Jobs[0].SEGSeriesID)
	}
	s.checkSEG(t, v.Jobs[0].SEGSeriesID, src)
}
