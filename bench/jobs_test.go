//go:build bench

package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanctest"
	"github.com/segbridge/segbridge/internal/queue"
)

// ---- ten thousand jobs ----

// jobsRun is what one size of the many-jobs bench measured.
type jobsRun struct {
	n int
	// queueS is the time to queue n jobs by webhook; drainS from the first
	// job taken to the last one done.
	queueS, drainS float64
	// listQueued and listDone are latencies (ms) of GET /v1/jobs?limit=50
	// with n jobs queued, and with n done; listRare of a state no job is in
	// (?state=failed&limit=50), which reads the bucket to its start.
	listQueued, listDone, listRare []float64
	// rssIdleKB is the bridge's resident memory before any job, rssKB after
	// the drain, hwmKB its peak.
	rssIdleKB, rssKB, hwmKB float64
	// kvBytes and streamBytes are the status bucket's and the job stream's
	// files on disk: with n jobs queued, and after the drain.
	kvQueued, streamQueued, kvDone, streamDone float64
}

// benchJobs queues 1,000 and then 10,000 jobs through the webhook into a
// bridge without workers, then drains them with two `segbridge worker`
// processes. The series are one 6x7 slice each (in a study of their own),
// so the reference model answers at once and what is measured is the queue,
// the bridge and Orthanc's round trips, not inference.
func (e *env) benchJobs() {
	o := orthanctest.Start(e.t, orthanctest.Options{}) // no Lua: the bench posts the webhooks
	inst := e.tinyInstance()
	small := e.jobsRun(o, inst, 1000, 0)
	large := e.jobsRun(o, inst, 10000, 1000)

	sec := Section{Title: "Queue: 1,000 and 10,000 jobs queued by webhook, drained by 2 worker processes (1-slice series, reference model)"}
	for _, r := range []jobsRun{small, large} {
		k := fmt.Sprintf("%d jobs: ", r.n)
		sec.Figures = append(sec.Figures,
			fig(k+"queue (webhook, 16 connections)", "jobs/s", []float64{float64(r.n) / r.queueS}, ""),
			fig(k+"drain", "jobs/s", []float64{float64(r.n) / r.drainS}, fmt.Sprintf("%.1f s from the first job taken to the last done", r.drainS)),
			fig(k+"GET /v1/jobs?limit=50, all queued", "ms", r.listQueued, ""),
			fig(k+"GET /v1/jobs?limit=50, all done", "ms", r.listDone, ""),
			fig(k+"GET /v1/jobs?state=failed&limit=50 (none: reads every status)", "ms", r.listRare, ""),
			fig(k+"bridge RSS idle / after the drain / peak", "MiB", []float64{r.rssKB / 1024}, fmt.Sprintf("idle %.0f MiB, peak %.0f MiB", r.rssIdleKB/1024, r.hwmKB/1024)),
			fig(k+"status bucket on disk, queued / done", "KiB", []float64{r.kvDone / 1024}, fmt.Sprintf("queued %.0f KiB", r.kvQueued/1024)),
			fig(k+"job stream on disk, queued / done", "KiB", []float64{r.streamDone / 1024}, fmt.Sprintf("queued %.0f KiB", r.streamQueued/1024)),
		)
	}
	perJob := func(r jobsRun) float64 { return r.drainS / float64(r.n) }
	drainGrowth := perJob(large) / perJob(small)
	listGrowth := median(large.listDone) / median(small.listDone)
	rssGrowth := (large.hwmKB - large.rssIdleKB) / max(1, small.hwmKB-small.rssIdleKB)
	kvGrowth := large.kvDone / max(1, small.kvDone)
	sec.Figures = append(sec.Figures,
		fig("1k → 10k: drain time per job", "x", []float64{drainGrowth}, "1 is linear"),
		fig("1k → 10k: GET /v1/jobs?limit=50", "x", []float64{listGrowth}, "1: independent of the number of jobs"),
		fig("1k → 10k: bridge memory above idle (peak)", "x", []float64{rssGrowth}, "10 is linear"),
		fig("1k → 10k: status bucket on disk", "x", []float64{kvGrowth}, "10 is linear"),
	)
	sec.Notes = append(sec.Notes, fmt.Sprintf("This machine has %d cores, shared by Orthanc, the bridge and both workers; each job is about a dozen Orthanc requests (series, SEG lookup, header, download, SEG store, the bridge's check of the SEG, metadata).", runtime.NumCPU()))
	e.add(sec)
	e.target("10k jobs: drain time per job vs 1k", "<= 1.25 (linear or better)", drainGrowth, "x", drainGrowth <= 1.25)
	e.target("10k jobs: GET /v1/jobs?limit=50 latency vs 1k", "<= 2 (does not read every status)", listGrowth, "x", listGrowth <= 2)
	e.target("10k jobs: bridge memory growth vs 1k", "<= 12.5 (linear or better)", rssGrowth, "x", rssGrowth <= 12.5)
	e.target("10k jobs: status bucket on disk vs 1k", "<= 12.5 (linear or better)", kvGrowth, "x", kvGrowth <= 12.5)
}

// tinyInstance is one 6x7 MR slice made from ch2 (1 in 32 voxels).
func (e *env) tinyInstance() []byte {
	s := fixture.MakeSeries(e.t, false, "--plane", "axial", "--step", "32", "--patient-id", "JOBS", "--seed", "31")
	files, _ := filepath.Glob(filepath.Join(s.Dir, "*.dcm"))
	if len(files) == 0 {
		e.t.Fatalf("no instance in %s", s.Dir)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// uploadCopies stores n copies of a one-instance series, each with its own
// study, series and instance UIDs (the generator's UIDs with their last ten
// digits replaced, so every length and the file stay valid), and returns
// their Orthanc series ids.
func (e *env) uploadCopies(o *orthanctest.Server, inst []byte, n, offset int) []string {
	var uids []string
	for _, tag := range []string{"0020000d", "0020000e", "00080018"} { // study, series, SOP instance
		uid := dicomString(e, inst, tag)
		if len(uid) < 20 {
			e.t.Fatalf("UID %q too short to vary", uid)
		}
		uids = append(uids, uid)
	}
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	client := &http.Client{Timeout: 30 * time.Second}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				b := inst
				for k, uid := range uids {
					// A different digit per kind keeps the three apart.
					repl := uid[:len(uid)-10] + fmt.Sprintf("%d%09d", k+1, offset+i)
					b = bytes.ReplaceAll(b, []byte(uid), []byte(repl))
				}
				req, _ := http.NewRequest(http.MethodPost, o.URL+"/instances", bytes.NewReader(b))
				req.SetBasicAuth(o.User, o.Password)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				var out struct{ ParentSeries, Status string }
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if err != nil || out.Status != "Success" {
					errs <- fmt.Errorf("store copy %d: %v %q", i, err, out.Status)
					return
				}
				ids[i] = out.ParentSeries
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// dicomString reads a short text element from a file written in explicit
// little endian (the generator's), by its tag's bytes.
func dicomString(e *env, b []byte, tag string) string {
	g, _ := strconv.ParseUint(tag[:4], 16, 16)
	el, _ := strconv.ParseUint(tag[4:], 16, 16)
	key := []byte{byte(g), byte(g >> 8), byte(el), byte(el >> 8)}
	// The first occurrence: the file meta holds no such tag, and the pixel
	// data, where the bytes might occur by chance, comes last.
	i := bytes.Index(b, key)
	if i < 0 || i+8 > len(b) || string(b[i+4:i+6]) != "UI" {
		e.t.Fatalf("no UI element %s", tag)
	}
	n := int(b[i+6]) | int(b[i+7])<<8
	return strings.TrimRight(string(b[i+8:i+8+n]), "\x00 ")
}

// jobsRun measures one size: a fresh bridge and data directory, n new series.
func (e *env) jobsRun(o *orthanctest.Server, inst []byte, n, offset int) jobsRun {
	r := jobsRun{n: n}
	ids := e.uploadCopies(o, inst, n, offset)
	port, natsPort, natsToken := orthanctest.FreePort(e.t), orthanctest.FreePort(e.t), randomHex(16)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	data := e.t.TempDir()
	env := map[string]string{
		"ORTHANC_URL": o.URL, "ORTHANC_USER": o.User, "ORTHANC_PASSWORD": o.Password,
		"SEGBRIDGE_LISTEN": fmt.Sprintf("127.0.0.1:%d", port), "SEGBRIDGE_WEBHOOK_TOKEN": e.token,
		"SEGBRIDGE_DATA_DIR": data, "MODEL_PATH": filepath.Join(e.root, "testdata/models/head-threshold.yaml"),
		"SEGBRIDGE_ORT_LIB": fixture.ORTLibrary(e.t), "SEGBRIDGE_WORKERS": "0",
		"SEGBRIDGE_NATS_LISTEN": fmt.Sprintf("127.0.0.1:%d", natsPort), "SEGBRIDGE_NATS_TOKEN": natsToken,
		"SEGBRIDGE_RECONCILE_INTERVAL": "off",
	}
	bridge := e.start([]string{"serve"}, env)
	defer bridge.stop()
	waitHTTP(e.t, base+"/healthz", bridge)
	r.rssIdleKB, _ = procStatus(e, bridge.cmd.Process.Pid)

	// Queue: n webhooks over 16 connections.
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				body := []byte(`{"event":"StableSeries","series_id":"` + ids[i] + `","tags":{"Modality":"MR"}}`)
				req, _ := http.NewRequest(http.MethodPost, base+"/v1/events/orthanc", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+e.token)
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	r.queueS = time.Since(start).Seconds()
	if f := failed.Load(); f > 0 {
		e.t.Fatalf("%d of %d webhooks failed", f, n)
	}
	r.listQueued = e.listLatency(base, "?limit=50", 50)
	r.kvQueued, r.streamQueued = streamBytes(data, "KV_"+queue.StatusBucket), streamBytes(data, queue.StreamName)

	// Drain with two worker processes.
	wenv := map[string]string{}
	for k, v := range env {
		wenv[k] = v
	}
	wenv["SEGBRIDGE_NATS_URL"] = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	wenv["SEGBRIDGE_WORKERS"] = "1"
	wenv["SEGBRIDGE_ORT_THREADS"] = "1"
	var workers []*proc
	for range 2 {
		workers = append(workers, e.start([]string{"worker"}, wenv))
	}
	deadline := time.Now().Add(30 * time.Minute)
	for {
		if done := e.doneCount(base); done == n {
			break
		} else if time.Now().After(deadline) {
			e.t.Fatalf("%d of %d jobs done after 30 min", done, n)
		}
		time.Sleep(time.Second)
	}
	for _, w := range workers {
		w.stop()
	}
	// Before the bench's own listing of every job, which the bridge answers
	// with a 10,000-status body.
	r.rssKB, r.hwmKB = procStatus(e, bridge.cmd.Process.Pid)
	var all struct{ Jobs []jobView }
	getJSON(e.t, base+"/v1/jobs?limit=10000", &all)
	var first, last time.Time
	for _, j := range all.Jobs {
		if j.State != "done" || j.StartedAt == nil || j.FinishedAt == nil {
			e.t.Fatalf("job %s: %s", j.ID, j.State)
		}
		if first.IsZero() || j.StartedAt.Before(first) {
			first = *j.StartedAt
		}
		if j.FinishedAt.After(last) {
			last = *j.FinishedAt
		}
	}
	if len(all.Jobs) != n {
		e.t.Fatalf("%d jobs listed, want %d", len(all.Jobs), n)
	}
	r.drainS = last.Sub(first).Seconds()
	r.listDone = e.listLatency(base, "?limit=50", 50)
	r.listRare = e.listLatency(base, "?state=failed&limit=50", 10)
	r.kvDone, r.streamDone = streamBytes(data, "KV_"+queue.StatusBucket), streamBytes(data, queue.StreamName)
	e.t.Logf("%d jobs: queued in %.1f s, drained in %.1f s; list %.1f ms; RSS %.0f MiB (idle %.0f, peak %.0f); status bucket %.0f KiB",
		n, r.queueS, r.drainS, median(r.listDone), r.rssKB/1024, r.rssIdleKB/1024, r.hwmKB/1024, r.kvDone/1024)
	return r
}

// doneCount reads the number of done jobs from the bridge's metrics, which
// keep it from the status watch (no listing).
func (e *env) doneCount(base string) int {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, `segbridge_jobs{state="done"} `); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int(f)
		}
	}
	return 0
}

// listLatency times k requests of GET /v1/jobs with the query, in ms.
func (e *env) listLatency(base, query string, k int) []float64 {
	var out []float64
	for range k {
		t0 := time.Now()
		resp, err := http.Get(base + "/v1/jobs" + query)
		if err != nil {
			e.t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			e.t.Fatalf("GET /v1/jobs%s: %d", query, resp.StatusCode)
		}
		out = append(out, float64(time.Since(t0).Microseconds())/1000)
	}
	return out
}

// procStatus reads a process's resident memory now and at its peak, in KiB.
func procStatus(e *env, pid int) (rss, hwm float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// streamBytes is the size on disk of a JetStream stream's folder under the
// embedded server's data directory.
func streamBytes(dataDir, stream string) float64 {
	var total int64
	_ = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if strings.Contains(p, string(filepath.Separator)+stream+string(filepath.Separator)) {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return float64(total)
}
