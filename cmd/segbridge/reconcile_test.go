package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/volume"
)

// TestReconcile_OrthancKilledWhileSeriesArrives: half of a series reaches
// Orthanc, which is killed with SIGKILL before it declares the series stable
// and started again on the same storage. Orthanc then reports the series
// stable without a StableSeries change or a webhook post; the reconciler,
// which follows NewSeries, finds it and queues it, and it ends done with one
// SEG, with no manual trigger.
func TestReconcile_OrthancKilledWhileSeriesArrives(t *testing.T) {
	start := time.Now()
	s := setupSystem(t, map[string]string{"SEGBRIDGE_RECONCILE_INTERVAL": "1s"})
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "4", "--patient-id", "CRASH", "--seed", "12")
	ctx := context.Background()

	// A contiguous half, as a modality cut off half way would leave it.
	half := src.Truth.Slices[:len(src.Truth.Slices)/2]
	var files []string
	for _, sl := range half {
		files = append(files, filepath.Join(src.Dir, sl.File))
	}
	ids, err := s.orthanc.UploadFiles(ctx, files)
	if err != nil || len(ids) != 1 {
		t.Fatalf("upload: %v %v", ids, err)
	}
	id := ids[0]
	var ser struct{ IsStable bool }
	if err := s.orthanc.GetJSON(ctx, "/series/"+id, &ser); err != nil {
		t.Fatal(err)
	}
	if ser.IsStable {
		t.Fatal("the series was stable before the kill (StableAge is 2 s): the test needs it still arriving")
	}
	s.orthanc.Kill()
	s.orthanc.Restart()

	restarted := time.Now()
	v := s.waitDone(t, id, 120*time.Second)
	t.Logf("done %s after Orthanc restarted (%s in all)", time.Since(restarted).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if len(v.Jobs) != 1 {
		t.Fatalf("%d jobs for the series, want 1: %+v", len(v.Jobs), v.Jobs)
	}
	job := v.Jobs[0]
	if job.Trigger != "reconciler" {
		t.Errorf("job trigger %q, want reconciler", job.Trigger)
	}
	var all struct{ Jobs []jobView }
	s.call(t, http.MethodGet, "/v1/jobs", "", nil, &all)
	if len(all.Jobs) != 1 {
		t.Errorf("%d jobs in the queue, want only the series' one: %+v", len(all.Jobs), all.Jobs)
	}

	t.Run("Orthanc never announced the series", func(t *testing.T) {
		var changes struct {
			Changes []struct{ ChangeType, ID string }
		}
		if err := s.orthanc.GetJSON(ctx, "/changes?since=0&limit=10000", &changes); err != nil {
			t.Fatal(err)
		}
		for _, c := range changes.Changes {
			if c.ID == id && c.ChangeType == "StableSeries" {
				t.Fatal("Orthanc logged StableSeries for the series: the crash case did not happen")
			}
		}
	})

	t.Run("one SEG of the half that arrived", func(t *testing.T) {
		segs := s.segSeriesOf(t, id)
		if len(segs) != 1 || segs[0] != job.SEGSeriesID {
			t.Fatalf("study has SEG series %v, status says %s", segs, job.SEGSeriesID)
		}
		path := s.segFile(t, job.SEGSeriesID)
		if errs, _ := fixture.Dciodvfy(t, path); len(errs) > 0 {
			t.Errorf("dciodvfy errors:\n%s", strings.Join(errs, "\n"))
		}
		seg := fixture.ReadSEG(t, path)
		if seg.ReferencedSeries.UID != src.Truth.SeriesInstanceUID || len(seg.ReferencedSeries.Instances) != len(half) {
			t.Fatalf("SEG references %s with %d instances, want %s with the %d stored", seg.ReferencedSeries.UID, len(seg.ReferencedSeries.Instances), src.Truth.SeriesInstanceUID, len(half))
		}
		// The reference model marks the head (ch2 > 0) on the slices stored.
		// The lower half of the head has more small structures at its edge
		// than the whole: 0.965 measured here, 0.97+ for whole series.
		tr := src.Truth
		plane := tr.Rows * tr.Cols
		sliceOf := map[string]int{}
		for k, sl := range half {
			sliceOf[sl.SOPInstanceUID] = k
		}
		mask := make([]uint8, plane*len(half))
		for f, fr := range seg.Frames {
			k, ok := sliceOf[fr.RefSOPInstanceUID]
			if !ok {
				t.Fatalf("frame %d references %s, not a stored instance", f+1, fr.RefSOPInstanceUID)
			}
			copy(mask[k*plane:(k+1)*plane], seg.Pixels[f*plane:(f+1)*plane])
		}
		head := make([]uint8, plane*len(half))
		for i := range head {
			if src.Values[i] > 0 {
				head[i] = 1
			}
		}
		if d := fixture.Dice(mask, head); d < 0.95 {
			t.Errorf("Dice against the head on the stored slices = %.4f, want >= 0.95", d)
		} else {
			t.Logf("Dice against ch2 > 0 on the stored slices: %.4f", d)
		}
	})

	t.Run("the log and the metrics count it as queued by the reconciler", func(t *testing.T) {
		found := false
		for _, line := range strings.Split(s.logs.String(), "\n") {
			var e struct {
				Component   string `json:"component"`
				Message     string `json:"message"`
				Unannounced int    `json:"unannounced"`
				Queued      int    `json:"queued"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Component == "reconciler" && e.Message == "reconcile pass" && e.Unannounced == 1 && e.Queued == 1 {
				found = true
			}
		}
		if !found {
			t.Error(`no "reconcile pass" log line with unannounced 1 and queued 1`)
		}
		resp, err := http.Get(s.bridge + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := `segbridge_jobs_queued_total{trigger="reconciler"} 1`; !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	})
}

// TestServe_SeriesCompletedAfterItsJob sends the first half of a series,
// lets Orthanc call it stable and segbridge segment it, then sends the rest,
// as a modality that pauses longer than StableAge does: Orthanc calls the
// series stable again, and segbridge segments it again (generation 2) into a
// SEG of every slice, instead of keeping the half one as the result.
func TestServe_SeriesCompletedAfterItsJob(t *testing.T) {
	s := setupSystem(t, nil)
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "LATE", "--seed", "71")
	// The first half by position, so that it is a stack of its own.
	first := map[string]bool{}
	for _, sl := range src.Truth.Slices[:len(src.Truth.Slices)/2] {
		first[sl.SOPInstanceUID] = true
	}
	halves := [2]string{t.TempDir(), t.TempDir()}
	entries, err := os.ReadDir(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fi, err := volume.ReadFileInfo(b)
		if err != nil {
			t.Fatal(err)
		}
		dst := halves[1]
		if first[fi.SOPInstanceUID] {
			dst = halves[0]
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	id := s.upload(t, halves[0])
	v := s.waitDone(t, id, 60*time.Second)
	jobID := v.Jobs[0].ID
	half := v.Jobs[0].SEGSeriesID
	if half == "" || v.Jobs[0].Generation != 1 {
		t.Fatalf("first half: %+v", v.Jobs[0])
	}
	if id2 := s.upload(t, halves[1]); id2 != id {
		t.Fatalf("the rest went into series %s, not %s", id2, id)
	}
	start := time.Now()
	var j jobView
	waitFor(t, 90*time.Second, "generation 2 of the job, done", func() bool {
		j = s.job(t, jobID)
		if j.Generation == 2 && j.State == "failed" {
			t.Fatalf("generation 2 failed: %s", j.Error)
		}
		return j.Generation == 2 && j.State == "done"
	})
	t.Logf("segmented again %s after the rest was uploaded (StableAge 2 s)", time.Since(start).Round(time.Millisecond))
	if j.SEGSeriesID == half {
		t.Fatal("generation 2 answered with the first half's SEG")
	}
	waitStable(t, s.orthanc, j.SEGSeriesID)
	s.checkSEG(t, j.SEGSeriesID, src) // every slice referenced, Dice against the whole head
	if !strings.Contains(s.logs.String(), "the series changed since its job was done") {
		t.Error("the log does not say why the series ran again")
	}
}
