//go:build bench

// Package bench measures segbridge end to end on this machine: per-stage
// times for real models on a real T1 series, download speed against
// Orthanc's own archive and the fastest raw fetch, webhook intake against the
// durable queue, worker peak memory, and scaling over worker processes. It
// writes bench/results.json and bench/RESULTS.md, with the growth of every
// stage and of peak memory over 512x512 series of 100, 200 and 400 slices.
// Run it with `make bench`;
// it asserts nothing about speed, it measures.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/orthanctest"
	"github.com/segbridge/segbridge/internal/queue"
	"github.com/segbridge/segbridge/internal/volume"
	"github.com/segbridge/segbridge/internal/worker"
)

// Figure is one measured quantity over several runs.
type Figure struct {
	Name   string    `json:"name"`
	Unit   string    `json:"unit"`
	Runs   []float64 `json:"runs"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Note   string    `json:"note,omitempty"`
}

// Section groups figures.
type Section struct {
	Title   string   `json:"title"`
	Figures []Figure `json:"figures"`
	Notes   []string `json:"notes,omitempty"`
}

// Target is one of the targets with what was measured.
type Target struct {
	Name     string  `json:"name"`
	Target   string  `json:"target"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
}

// Results is the whole of bench/results.json.
type Results struct {
	Date     string    `json:"date"`
	CPU      string    `json:"cpu"`
	Cores    int       `json:"cores"`
	Go       string    `json:"go"`
	Orthanc  string    `json:"orthanc"`
	Sections []Section `json:"sections"`
	Tables   []Table   `json:"tables,omitempty"`
	Targets  []Target  `json:"targets"`
}

// Table is a grid of figures (medians) that reads better across than down:
// the growth of each stage with the slice count.
type Table struct {
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	Notes   []string   `json:"notes,omitempty"`
}

func fig(name, unit string, runs []float64, note string) Figure {
	f := Figure{Name: name, Unit: unit, Runs: runs, Note: note}
	if len(runs) == 0 {
		return f
	}
	s := append([]float64(nil), runs...)
	sort.Float64s(s)
	f.Min, f.Max = s[0], s[len(s)-1]
	if len(s)%2 == 1 {
		f.Median = s[len(s)/2]
	} else {
		f.Median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return f
}

func median(runs []float64) float64 { return fig("", "", runs, "").Median }

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.Index(l, ":"); i > 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return runtime.GOARCH
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// env is what every bench step shares.
type env struct {
	t       *testing.T
	root    string
	bin     string
	orthanc *orthanctest.Server
	client  *orthanc.Client
	token   string
	models  string // a folder of manifests
	res     *Results
}

func TestBench(t *testing.T) {
	root := fixture.Root(t)
	bin := os.Getenv("SEGBRIDGE_BIN")
	if bin == "" {
		bin = filepath.Join(root, "bin/segbridge")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s not built: run make build (make bench does)", bin)
	}
	e := &env{t: t, root: root, bin: bin, token: randomHex(24)}
	e.res = &Results{Date: time.Now().UTC().Format(time.RFC3339), CPU: cpuModel(), Cores: runtime.NumCPU(), Go: runtime.Version()}
	e.models = e.modelsDir()

	bridgePort := orthanctest.FreePort(t)
	e.orthanc = orthanctest.Start(t, orthanctest.Options{
		StableAge:  1,
		LuaScripts: []string{filepath.Join(root, "orthanc-lua/segbridge.lua")},
		Extra: map[string]any{"Segbridge": map[string]any{
			"Url": fmt.Sprintf("http://127.0.0.1:%d", bridgePort), "Token": e.token, "Modalities": []string{"MR"},
		}},
	})
	var err error
	e.client, err = orthanc.NewClient(zerolog.Nop(), orthanc.Config{URL: e.orthanc.URL, User: e.orthanc.User, Password: e.orthanc.Password, MaxConnsPerHost: 32})
	if err != nil {
		t.Fatal(err)
	}
	if sys, err := e.client.System(context.Background()); err == nil {
		e.res.Orthanc = sys.Version
	}

	steps := strings.Split(os.Getenv("BENCH_STEPS"), ",")
	want := func(s string) bool { return steps[0] == "" || contains(steps, s) }
	if want("download") {
		e.benchDownload()
	}
	if want("stages") {
		e.benchStages(bridgePort)
	}
	if want("memory") {
		e.benchMemory()
	}
	if want("intake") {
		e.benchIntake()
	}
	if want("halfopen") {
		e.benchHalfOpen()
	}
	if want("scale") {
		e.benchScale()
	}
	if want("growth") {
		e.benchGrowth()
	}
	if want("jobs") {
		e.benchJobs()
	}
	if want("refuse") {
		e.benchRefuse()
	}
	e.write()
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// modelsDir gathers the manifests the bench runs into one folder: the
// reference model and, when ../shared/models is present, the brainchop
// manifests that point at it.
func (e *env) modelsDir() string {
	dir := e.t.TempDir()
	link := func(src string) {
		if err := os.Symlink(src, filepath.Join(dir, filepath.Base(src))); err != nil {
			e.t.Fatal(err)
		}
	}
	link(filepath.Join(e.root, "testdata/models/head-threshold.yaml"))
	link(filepath.Join(e.root, "testdata/models/head-threshold.onnx"))
	bc, _ := filepath.Glob(filepath.Join(e.root, "models/brainchop/*.yaml"))
	for _, m := range bc {
		name := strings.TrimSuffix(filepath.Base(m), ".yaml")
		if _, err := os.Stat(filepath.Join(e.modelFiles(), name+".onnx")); err == nil {
			link(m)
		}
	}
	return dir
}

// modelFiles is where the brainchop manifests find their .onnx files: the
// shared models folder beside the repository.
func (e *env) modelFiles() string {
	return filepath.Join(filepath.Dir(e.root), "shared/models/brainchop")
}

// brainchop lists the pretrained models whose stages are timed; allModels
// every model whose run time and peak memory are measured.
func (e *env) brainchop() []string { return e.present("model5_gw_ae", "mindgrab") }

func (e *env) allModels() []string {
	return append([]string{"head-threshold"}, e.present("model5_gw_ae", "model11_gw_ae", "mindgrab", "model21_104class")...)
}

func (e *env) present(names ...string) []string {
	var out []string
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(e.models, n+".yaml")); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func (e *env) add(s Section) {
	e.res.Sections = append(e.res.Sections, s)
	for _, f := range s.Figures {
		e.t.Logf("%-60s median %10.2f %s  (min %.2f, max %.2f, %d runs)", s.Title+": "+f.Name, f.Median, f.Unit, f.Min, f.Max, len(f.Runs))
	}
}

func (e *env) target(name, target string, measured float64, unit string, met bool) {
	e.res.Targets = append(e.res.Targets, Target{Name: name, Target: target, Measured: measured, Unit: unit, Met: met})
}

// ---- download ----

// makeBig writes a 512x512 MR series of slices slices (smooth synthetic
// anatomy, 16-bit).
func (e *env) makeBig(slices int) string {
	dir := e.t.TempDir()
	cmd := exec.Command(fixture.Python, filepath.Join(e.root, "bench/makebig.py"), dir, fmt.Sprint(slices))
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("makebig.py: %v\n%s", err, out)
	}
	return dir
}

func (e *env) upload(dir string) string {
	ids, err := e.orthanc.Upload(context.Background(), dir)
	if err != nil || len(ids) != 1 {
		e.t.Fatalf("upload %s: %v %v", dir, ids, err)
	}
	return ids[0]
}

func (e *env) benchDownload() {
	ctx := context.Background()
	ch2 := fixture.MakeSeries(e.t, false, "--plane", "axial", "--seed", "100", "--patient-id", "BENCH-DL")
	series := []struct{ name, id string }{
		{"ch2 (181 x 181x217)", e.upload(ch2.Dir)},
		{"synthetic 200 x 512x512", e.upload(e.makeBig(200))},
	}
	for _, s := range series {
		ser, err := e.client.Series(ctx, s.id)
		if err != nil {
			e.t.Fatal(err)
		}
		// Best raw concurrency first, measured in this run.
		best, bestMS := 1, math.Inf(1)
		var rawByConc []string
		for _, c := range []int{1, 2, 4, 8, 16} {
			ms := median(repeat(3, func() float64 { return e.rawFetch(ctx, ser.Instances, c) }))
			rawByConc = append(rawByConc, fmt.Sprintf("%d: %.0f ms", c, ms))
			if ms < bestMS {
				best, bestMS = c, ms
			}
		}
		var ours, parsed, raw, rawKeep, archive, parsedCPU, rawCPU []float64
		// The first download and parse in the process reads into fresh
		// memory; a worker's later ones read into the buffers of the
		// series before (orthanc.Client.Recycle), as the runs below do.
		e.settle()
		cold := timeMS(func() {
			if _, _, err := worker.FetchInstances(ctx, e.client, volume.Parser{}, ser.Instances, 8, nil, nil); err != nil {
				e.t.Fatal(err)
			}
		})
		for i := 0; i < 5; i++ {
			ours = append(ours, timeMS(func() {
				err := worker.FetchFiles(ctx, e.client, ser.Instances, 8, func(_ int, b []byte) error { e.client.Recycle(b); return nil })
				if err != nil {
					e.t.Fatal(err)
				}
			}))
			e.settle()
			c0 := cpuTime()
			parsed = append(parsed, timeMS(func() {
				if _, _, err := worker.FetchInstances(ctx, e.client, volume.Parser{}, ser.Instances, 8, nil, nil); err != nil {
					e.t.Fatal(err)
				}
			}))
			parsedCPU = append(parsedCPU, ms(cpuTime()-c0))
			c0 = cpuTime()
			raw = append(raw, e.rawFetch(ctx, ser.Instances, best))
			rawCPU = append(rawCPU, ms(cpuTime()-c0))
			rawKeep = append(rawKeep, e.rawFetchKeep(ctx, ser.Instances, best, true))
			archive = append(archive, timeMS(func() {
				if _, err := e.orthanc.Get(ctx, "/series/"+s.id+"/archive"); err != nil {
					e.t.Fatal(err)
				}
			}))
		}
		sec := Section{Title: "Download, " + s.name, Figures: []Figure{
			fig("segbridge download (its Orthanc client, 8 connections)", "ms", ours, ""),
			fig("segbridge download + parse, overlapped (the worker's stage)", "ms", parsed, "into the buffers of the run before, as a worker's next series is"),
			fig("segbridge download + parse, first in the process (fresh buffers)", "ms", []float64{cold}, ""),
			fig("segbridge download + parse / raw (ratio)", "x", ratios(parsed, raw), "raw discards the bytes"),
			fig("client CPU, segbridge download + parse", "ms", parsedCPU, "this process's user+system time: Orthanc's is the same for both"),
			fig("client CPU, raw fetch discarding the bytes", "ms", rawCPU, ""),
			fig(fmt.Sprintf("raw GET /instances/{id}/file, best concurrency %d", best), "ms", raw, "raw fetch by concurrency: "+strings.Join(rawByConc, ", ")),
			fig("raw fetch keeping the bytes (a new buffer per file), same concurrency", "ms", rawKeep, ""),
			fig("GET /series/{id}/archive", "ms", archive, ""),
			fig("segbridge / raw (ratio)", "x", ratios(ours, raw), "raw discards the bytes"),
			fig("segbridge / raw keeping the bytes (ratio)", "x", ratios(ours, rawKeep), ""),
			fig("archive / segbridge (speed-up)", "x", ratios(archive, ours), ""),
			fig("per instance, raw", "ms", scale(raw, 1/float64(len(ser.Instances))), ""),
		}}
		e.add(sec)
		if strings.Contains(s.name, "512") {
			r := median(ratios(parsed, raw))
			e.target("download + parse within 1.25x of the fastest raw fetch that discards the bytes (512x512x200)", "<= 1.25", r, "x", r <= 1.25)
			a := median(ratios(archive, ours))
			e.target("download at least 2x faster than /series/{id}/archive (512x512x200)", ">= 2", a, "x", a >= 2)
		}
	}
}

func (e *env) rawFetch(ctx context.Context, ids []string, conc int) float64 {
	return e.rawFetchKeep(ctx, ids, conc, false)
}

// rawFetchKeep fetches like rawFetch; with keep it reads each body into a
// new buffer of its Content-Length, as any client that uses the bytes must.
func (e *env) rawFetchKeep(ctx context.Context, ids []string, conc int, keep bool) float64 {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}}
	defer client.CloseIdleConnections()
	return timeMS(func() {
		var wg sync.WaitGroup
		next := int64(-1)
		for g := 0; g < conc; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := atomic.AddInt64(&next, 1)
					if int(i) >= len(ids) {
						return
					}
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.orthanc.URL+"/instances/"+ids[i]+"/file", nil)
					req.SetBasicAuth(e.orthanc.User, e.orthanc.Password)
					resp, err := client.Do(req)
					if err != nil {
						e.t.Error(err)
						return
					}
					if keep && resp.ContentLength > 0 {
						buf := make([]byte, resp.ContentLength)
						_, _ = io.ReadFull(resp.Body, buf)
					} else {
						_, _ = io.Copy(io.Discard, resp.Body)
					}
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
	})
}

// settle collects garbage until the Orthanc client has taken back every
// file it will (the instances of the run before are garbage, and volume
// hands their files back from the runtime's cleanups), as happens in a
// worker between two series while the model runs.
func (e *env) settle() {
	deadline := time.Now().Add(3 * time.Second)
	last := int64(-1)
	for time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		n := e.client.PooledBytes()
		if n == last {
			return
		}
		last = n
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func repeat(n int, f func() float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = f()
	}
	return out
}

func timeMS(f func()) float64 {
	start := time.Now()
	f()
	return float64(time.Since(start).Microseconds()) / 1000
}

func ratios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] / b[i]
	}
	return out
}

func scale(a []float64, k float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] * k
	}
	return out
}

// ---- processes ----

type proc struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{}
}

func (e *env) start(args []string, envv map[string]string) *proc {
	cmd := exec.Command(e.bin, args...)
	cmd.Env = append(os.Environ(), "SEGBRIDGE_LOG_FORMAT=json", "SEGBRIDGE_LOG_LEVEL=warn")
	for k, v := range envv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{cmd: cmd, logs: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	e.t.Cleanup(p.stop)
	return p
}

func (p *proc) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (e *env) serveEnv(port int, extra map[string]string) map[string]string {
	m := map[string]string{
		"ORTHANC_URL":             e.orthanc.URL,
		"ORTHANC_USER":            e.orthanc.User,
		"ORTHANC_PASSWORD":        e.orthanc.Password,
		"SEGBRIDGE_LISTEN":        fmt.Sprintf("127.0.0.1:%d", port),
		"SEGBRIDGE_WEBHOOK_TOKEN": e.token,
		"SEGBRIDGE_DATA_DIR":      e.t.TempDir(),
		"SEGBRIDGE_MODELS_DIR":    e.models,
		"SEGBRIDGE_MODEL":         "head-threshold",
		"SEGBRIDGE_ORT_LIB":       fixture.ORTLibrary(e.t),
		"SEGBRIDGE_MODEL_FILES":   e.modelFiles(),
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func waitHTTP(t *testing.T, url string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("process exited:\n%s", p.logs.String())
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer:\n%s", url, p.logs.String())
}

type jobView struct {
	ID          string             `json:"id"`
	State       string             `json:"state"`
	Error       string             `json:"error"`
	RequestedAt time.Time          `json:"requested_at"`
	StartedAt   *time.Time         `json:"started_at"`
	FinishedAt  *time.Time         `json:"finished_at"`
	Timings     map[string]float64 `json:"timings_ms"`
}

func getJSON(t *testing.T, url string, v any) int {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

func post(t *testing.T, url, token string, body []byte, v any) int {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// waitJob polls a job until it is done; it fails the bench if it failed.
func waitJob(t *testing.T, base, jobID string, within time.Duration) jobView {
	deadline := time.Now().Add(within)
	for {
		var j jobView
		getJSON(t, base+"/v1/jobs/"+jobID, &j)
		if j.State == "done" {
			return j
		}
		if j.State == "failed" || time.Now().After(deadline) {
			t.Fatalf("job %s: %s %s", jobID, j.State, j.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- stage times ----

var stageNames = []string{"wait", "download", "parse", "volume", "preprocess", "inference", "postprocess", "encode", "upload", "total", "end_to_end"}

func (e *env) benchStages(port int) {
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := e.start([]string{"serve"}, e.serveEnv(port, nil))
	waitHTTP(e.t, base+"/healthz", p)
	defer p.stop()

	// Reference model through the Lua path: a new copy of ch2 each run,
	// timed from the end of its upload to its SEG stored.
	runs := map[string][]float64{}
	var trigger []float64
	var firstSeries string
	for i := 0; i < 3; i++ {
		s := fixture.MakeSeries(e.t, false, "--plane", "axial", "--seed", fmt.Sprint(200+i), "--patient-id", fmt.Sprintf("BENCH-%d", i))
		id := e.upload(s.Dir)
		uploaded := time.Now()
		if firstSeries == "" {
			firstSeries = id
		}
		jobID := queue.JobID(id, "head-threshold", "1.0.0")
		var j jobView
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if getJSON(e.t, base+"/v1/jobs/"+jobID, &j) == http.StatusOK && j.State == "done" {
				break
			}
			if time.Now().After(deadline) || j.State == "failed" {
				e.t.Fatalf("reference job %s: %+v\n%s", jobID, j, p.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		trigger = append(trigger, float64(j.RequestedAt.Sub(uploaded).Microseconds())/1000)
		for k, v := range j.Timings {
			runs[k] = append(runs[k], v)
		}
	}
	sec := Section{Title: "Stages, head-threshold (reference) on ch2 via Orthanc's stable event"}
	sec.Figures = append(sec.Figures, fig("upload end to webhook (Orthanc StableAge 1 s)", "ms", trigger, "Orthanc's stability timer, not segbridge"))
	for _, s := range stageNames {
		if v, ok := runs[s]; ok {
			sec.Figures = append(sec.Figures, fig(s, "ms", v, ""))
		}
	}
	// Everything from the trigger to the SEG stored but the model's run:
	// waiting for a worker, download, volume, pre- and postprocessing,
	// encoding, upload and the queue's bookkeeping between them.
	var rest []float64
	for i := range runs["end_to_end"] {
		rest = append(rest, runs["end_to_end"][i]-runs["inference"][i])
	}
	sec.Figures = append(sec.Figures, fig("trigger to SEG stored, less inference", "ms", rest, "end_to_end - inference"))
	e.add(sec)
	r := median(rest)
	e.target("head-threshold on ch2: trigger to SEG stored, less inference", "<= 150 ms", r, "ms", r <= 150)

	for _, m := range e.brainchop() {
		n := 3
		if m == "mindgrab" {
			n = 2
		}
		runs := map[string][]float64{}
		var overhead []float64
		for i := 0; i < n; i++ {
			var j jobView
			code := post(e.t, base+"/v1/series/"+firstSeries+"/segment?model="+m+"&force=true", "", nil, &j)
			if code != http.StatusAccepted {
				e.t.Fatalf("trigger %s: %d %+v", m, code, j)
			}
			j = waitJob(e.t, base, j.ID, 5*time.Minute)
			for k, v := range j.Timings {
				runs[k] = append(runs[k], v)
			}
			if inf := j.Timings["inference"]; inf > 0 {
				overhead = append(overhead, (j.Timings["end_to_end"]-inf)/inf*100)
			}
		}
		sec := Section{Title: "Stages, " + m + " on ch2 (manual trigger)"}
		for _, s := range stageNames {
			if v, ok := runs[s]; ok {
				sec.Figures = append(sec.Figures, fig(s, "ms", v, ""))
			}
		}
		sec.Figures = append(sec.Figures, fig("overhead: (end to end - inference) / inference", "%", overhead, ""))
		e.add(sec)
		if m == "model5_gw_ae" {
			o := median(overhead)
			e.target("overhead for model5_gw_ae on ch2: (end to end - inference) / inference", "<= 8 %", o, "%", o <= 8)
		}
	}
}

// ---- memory ----

func (e *env) benchMemory() {
	ch2 := fixture.MakeSeries(e.t, false, "--plane", "axial", "--seed", "300")
	sec := Section{Title: "Peak memory (RSS) of `segbridge segment` on ch2"}
	for _, m := range e.allModels() {
		out := filepath.Join(e.t.TempDir(), "seg.dcm")
		cmd := exec.Command(e.bin, "segment", ch2.Dir, "--model", m, "-o", out)
		cmd.Env = append(os.Environ(), "SEGBRIDGE_MODELS_DIR="+e.models, "SEGBRIDGE_ORT_LIB="+fixture.ORTLibrary(e.t), "SEGBRIDGE_MODEL_FILES="+e.modelFiles())
		start := time.Now()
		b, err := cmd.CombinedOutput()
		if err != nil {
			e.t.Fatalf("segment %s: %v\n%s", m, err, b)
		}
		wall := float64(time.Since(start).Milliseconds())
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		rss := float64(ru.Maxrss) / 1024
		sec.Figures = append(sec.Figures, fig(m+" peak RSS", "MiB", []float64{rss}, ""), fig(m+" wall time (process start to SEG file)", "ms", []float64{wall}, ""))
		switch m {
		case "mindgrab":
			e.target("mindgrab peak RSS on ch2", "<= 2 GB (1907 MiB)", rss, "MiB", rss <= 2e9/1024/1024)
		case "model21_104class":
			e.target("model21_104class peak RSS on ch2", "<= 2.5 GB (2384 MiB)", rss, "MiB", rss <= 2.5e9/1024/1024)
		}
	}
	e.add(sec)
}

// ---- intake ----

// queueBridge starts `segbridge serve` without workers and with its NATS
// open to worker processes (and to the bench, for counting).
func (e *env) queueBridge() (base string, port, natsPort int, natsToken string, p *proc) {
	port = orthanctest.FreePort(e.t)
	natsPort = orthanctest.FreePort(e.t)
	natsToken = randomHex(16)
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	p = e.start([]string{"serve"}, e.serveEnv(port, map[string]string{
		"SEGBRIDGE_WORKERS":     "0",
		"SEGBRIDGE_NATS_LISTEN": fmt.Sprintf("127.0.0.1:%d", natsPort),
		"SEGBRIDGE_NATS_TOKEN":  natsToken,
	}))
	waitHTTP(e.t, base+"/healthz", p)
	return base, port, natsPort, natsToken, p
}

func (e *env) benchIntake() {
	base, _, _, _, p := e.queueBridge()
	defer p.stop()
	// The queue's own counts, from the bridge's /metrics: a worker's NATS
	// credentials may not read streams or buckets, and the bench has no
	// other. The job statuses come from a watch of the status bucket, so
	// they are read until they stop changing.
	counts := func() (msgs uint64, keys uint64) {
		var last uint64 = math.MaxUint64
		deadline := time.Now().Add(time.Minute)
		for {
			m := metricsOf(e.t, base)
			msgs, keys = uint64(m["segbridge_queue_depth"]), 0
			for k, v := range m {
				if strings.HasPrefix(k, "segbridge_jobs{") {
					keys += uint64(v)
				}
			}
			if keys == last || time.Now().After(deadline) {
				return msgs, keys
			}
			last = keys
			time.Sleep(500 * time.Millisecond)
		}
	}

	const duration = 30 * time.Second
	const conc = 32
	body := func(i int64) []byte {
		id := fmt.Sprintf("%040x", i)
		oid := id[0:8] + "-" + id[8:16] + "-" + id[16:24] + "-" + id[24:32] + "-" + id[32:40]
		return []byte(`{"event":"StableSeries","series_id":"` + oid + `","tags":{"Modality":"MR"}}`)
	}
	var n int64
	lat, accepted, errs := load(conc, duration, func(c *http.Client) (bool, error) {
		i := atomic.AddInt64(&n, 1)
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/events/orthanc", bytes.NewReader(body(i)))
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := c.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted, nil
	})
	msgs, keys := counts()
	rps := float64(accepted) / duration.Seconds()
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	sec := Section{Title: fmt.Sprintf("Intake: webhook, %d connections for %s, durable queue (file storage)", conc, duration)}
	sec.Figures = []Figure{
		fig("accepted requests per second", "req/s", []float64{rps}, ""),
		fig("latency p50", "ms", []float64{p50}, ""),
		fig("latency p99", "ms", []float64{p99}, ""),
	}
	sec.Notes = append(sec.Notes, fmt.Sprintf("%d requests accepted (202), %d errors; queue holds %d messages and %d job statuses: %s",
		accepted, errs, msgs, keys, map[bool]string{true: "every accepted request is exactly one queued job", false: "MISMATCH"}[msgs == uint64(accepted) && keys == uint64(accepted)]))
	e.target("webhook intake", ">= 5000 req/s", rps, "req/s", rps >= 5000)
	e.target("webhook intake p99 latency", "< 20 ms", p99, "ms", p99 < 20)
	e.target("webhook intake: none lost", "queued jobs = accepted requests", float64(int64(msgs)-accepted), "missing or extra", msgs == uint64(accepted) && keys == uint64(accepted))

	// Manual triggers over 20 real series: every trigger after the first of
	// a series answers with the existing job, so 20 jobs must result.
	before, _ := counts()
	var ids []string
	for i := 0; i < 20; i++ {
		s := fixture.MakeSeries(e.t, false, "--plane", "axial", "--step", "8", "--seed", fmt.Sprint(400+i), "--patient-id", fmt.Sprintf("INTAKE-%d", i))
		ids = append(ids, e.upload(s.Dir))
	}
	var m int64
	lat2, accepted2, errs2 := load(conc, duration, func(c *http.Client) (bool, error) {
		i := atomic.AddInt64(&m, 1)
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/series/"+ids[int(i)%len(ids)]+"/segment", nil)
		resp, err := c.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK, nil
	})
	after, _ := counts()
	rps2 := float64(accepted2) / duration.Seconds()
	sec2 := Section{Title: fmt.Sprintf("Intake: manual trigger on 20 series, %d connections for %s", conc, duration)}
	sec2.Figures = []Figure{
		fig("answered requests per second", "req/s", []float64{rps2}, "each request reads the series from Orthanc first (404 for unknown series)"),
		fig("latency p50", "ms", []float64{percentile(lat2, 50)}, ""),
		fig("latency p99", "ms", []float64{percentile(lat2, 99)}, ""),
	}
	sec2.Notes = append(sec2.Notes, fmt.Sprintf("%d requests answered, %d errors; new queued jobs: %d (want 20, one per series)", accepted2, errs2, after-before))
	e.add(sec)
	e.add(sec2)
}

// metricsOf reads the bridge's /metrics into a map from each sample's name
// and labels to its value.
func metricsOf(t *testing.T, base string) map[string]float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(l[i+1:], &v); err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

// load runs f from conc goroutines for d and returns latencies (ms) of the
// successful calls, how many succeeded and how many failed.
func load(conc int, d time.Duration, f func(*http.Client) (bool, error)) ([]float64, int64, int64) {
	var ok, bad int64
	var mu sync.Mutex
	var lat []float64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
			local := make([]float64, 0, 1<<16)
			for time.Now().Before(stop) {
				t0 := time.Now()
				good, err := f(c)
				if err != nil || !good {
					atomic.AddInt64(&bad, 1)
					continue
				}
				local = append(local, float64(time.Since(t0).Microseconds())/1000)
				atomic.AddInt64(&ok, 1)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, ok, bad
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// ---- half-open connections ----

// benchHalfOpen measures the webhook as the intake row does, alone and then
// beside 200 connections that open and send nothing or half a request line
// (a broken client, or a slowloris). The bridge closes each after its header
// timeout (10 s); they are opened again at once, so 200 are held throughout.
func (e *env) benchHalfOpen() {
	base, _, _, _, p := e.queueBridge()
	defer p.stop()
	addr := strings.TrimPrefix(base, "http://")
	const duration = 15 * time.Second
	const conc = 32
	const halfOpen = 200
	var n int64
	webhook := func(c *http.Client) (bool, error) {
		id := fmt.Sprintf("%040x", atomic.AddInt64(&n, 1)|1<<60)
		oid := id[0:8] + "-" + id[8:16] + "-" + id[16:24] + "-" + id[24:32] + "-" + id[32:40]
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/events/orthanc",
			strings.NewReader(`{"event":"StableSeries","series_id":"`+oid+`","tags":{"Modality":"MR"}}`))
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := c.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted, nil
	}

	// Two rounds each, alternating, so that a burst of load from elsewhere
	// on the machine does not fall on one side only.
	const rounds = 2
	var p50a, p99a, rpsa, p50b, p99b, rpsb []float64
	var errsA, errsB, opens int64
	minHeld := int64(halfOpen)
	for range rounds {
		lat, ok, bad := load(conc, duration, webhook)
		p50a, p99a, rpsa = append(p50a, percentile(lat, 50)), append(p99a, percentile(lat, 99)), append(rpsa, float64(ok)/duration.Seconds())
		errsA += bad
		release, opened, held := holdHalfOpen(e.t, addr, halfOpen)
		lat, ok, bad = load(conc, duration, webhook)
		p50b, p99b, rpsb = append(p50b, percentile(lat, 50)), append(p99b, percentile(lat, 99)), append(rpsb, float64(ok)/duration.Seconds())
		errsB += bad
		minHeld = min(minHeld, held())
		opens += opened()
		release()
	}

	sec := Section{Title: fmt.Sprintf("Webhook beside %d half-open connections, %d connections, %d rounds of %s each", halfOpen, conc, rounds, duration)}
	beside := fmt.Sprintf(", beside %d half-open", halfOpen)
	sec.Figures = []Figure{
		fig("latency p50, alone", "ms", p50a, ""),
		fig("latency p99, alone", "ms", p99a, ""),
		fig("latency p50"+beside, "ms", p50b, ""),
		fig("latency p99"+beside, "ms", p99b, ""),
		fig("accepted requests per second, alone", "req/s", rpsa, ""),
		fig("accepted requests per second"+beside, "req/s", rpsb, "the bench's own 200 connection holders share the 2 cores"),
	}
	sec.Notes = append(sec.Notes, fmt.Sprintf("errors: %d alone, %d beside. The half-open connections were opened %d times in all: "+
		"the bridge closed each after its header timeout and it was opened again; at least %d were held at every moment",
		errsA, errsB, opens, minHeld))
	e.add(sec)
}

// holdHalfOpen keeps n connections to addr open that send nothing (even
// ones) or half a request line (odd ones), opening each again when the
// server closes it. release closes them; opened counts the connections
// made; held is the fewest open at once since they were all first open.
func holdHalfOpen(t *testing.T, addr string, n int) (release func(), opened func() int64, held func() int64) {
	var open, made, fewest atomic.Int64
	fewest.Store(int64(n))
	stop := make(chan struct{})
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	for i := range n {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Errorf("half-open connection: %v", err)
					if first {
						ready.Done()
					}
					return
				}
				made.Add(1)
				if i%2 == 1 {
					_, _ = io.WriteString(c, "POST /v1/events/orth")
				}
				mu.Lock()
				select {
				case <-stop: // release has already closed the others
					mu.Unlock()
					c.Close()
					return
				default:
				}
				conns[c] = true
				mu.Unlock()
				open.Add(1)
				if first {
					ready.Done()
					first = false
				}
				_, _ = io.Copy(io.Discard, c) // until the server closes it
				v := open.Add(-1)
				select {
				case <-stop:
				default:
					for f := fewest.Load(); v < f && !fewest.CompareAndSwap(f, v); f = fewest.Load() {
					}
				}
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}
		}()
	}
	ready.Wait()
	release = func() {
		close(stop)
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	return release, made.Load, fewest.Load
}

// ---- scale ----

func (e *env) benchScale() {
	base, port, natsPort, natsToken, p := e.queueBridge()
	defer p.stop()

	const jobs = 40
	var ids []string
	for i := 0; i < jobs; i++ {
		s := fixture.MakeSeries(e.t, false, "--plane", "axial", "--step", "2", "--seed", fmt.Sprint(500+i), "--patient-id", fmt.Sprintf("SCALE-%d", i))
		ids = append(ids, e.upload(s.Dir))
	}
	drain := func(workers int, force bool) float64 {
		var jobIDs []string
		for _, id := range ids {
			var j jobView
			code := post(e.t, base+"/v1/series/"+id+"/segment?force="+fmt.Sprint(force), "", nil, &j)
			if code != http.StatusAccepted {
				e.t.Fatalf("queue %s: %d", id, code)
			}
			jobIDs = append(jobIDs, j.ID)
		}
		var procs []*proc
		for w := 0; w < workers; w++ {
			procs = append(procs, e.start([]string{"worker"}, e.serveEnv(port, map[string]string{
				"SEGBRIDGE_NATS_URL":   fmt.Sprintf("nats://127.0.0.1:%d", natsPort),
				"SEGBRIDGE_NATS_TOKEN": natsToken,
				"SEGBRIDGE_WORKERS":    "1",
			})))
		}
		var first, last time.Time
		for _, id := range jobIDs {
			j := waitJob(e.t, base, id, 10*time.Minute)
			if first.IsZero() || j.StartedAt.Before(first) {
				first = *j.StartedAt
			}
			if j.FinishedAt.After(last) {
				last = *j.FinishedAt
			}
		}
		for _, pr := range procs {
			pr.stop()
		}
		// Every job's first start to last finish.
		var earliest time.Time
		for _, id := range jobIDs {
			var j jobView
			getJSON(e.t, base+"/v1/jobs/"+id, &j)
			if earliest.IsZero() || j.StartedAt.Before(earliest) {
				earliest = *j.StartedAt
			}
		}
		_ = first
		return float64(last.Sub(earliest).Milliseconds())
	}
	one := drain(1, false)
	two := drain(2, true)
	e.add(Section{Title: fmt.Sprintf("Scale: drain %d queued jobs (ch2 at 2 mm, head-threshold), separate worker processes", jobs), Figures: []Figure{
		fig("1 worker", "ms", []float64{one}, ""),
		fig("2 workers", "ms", []float64{two}, ""),
		fig("speed-up 1 → 2 workers", "x", []float64{one / two}, fmt.Sprintf("this machine has %d cores shared by Orthanc, the bridge and the workers", runtime.NumCPU())),
	}})
}

// ---- growth ----

// benchGrowth times the reference model through the worker on 512x512
// series of 100, 200 and 400 slices, stage by stage, and measures the peak
// RSS of segbridge segment on each: every stage and the memory should grow
// no faster than the slice count.
func (e *env) benchGrowth() {
	sizes := []int{100, 200, 400}
	const runsPerSize = 5
	port := orthanctest.FreePort(e.t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := e.start([]string{"serve"}, e.serveEnv(port, nil))
	waitHTTP(e.t, base+"/healthz", p)
	defer p.stop()

	stages := []string{"wait", "download", "parse", "volume", "preprocess", "inference", "postprocess", "encode", "sr", "upload_sr", "upload", "total", "end_to_end"}
	dirs, ids := map[int]string{}, map[int]string{}
	for _, n := range sizes {
		dirs[n] = e.makeBig(n)
		ids[n] = e.upload(dirs[n])
	}
	// Rounds over the sizes, so that a burst of load from elsewhere on the
	// machine falls on every size rather than on one.
	runs := map[int]map[string][]float64{}
	for range runsPerSize {
		for _, n := range sizes {
			var j jobView
			if code := post(e.t, base+"/v1/series/"+ids[n]+"/segment?model=head-threshold&force=true", "", nil, &j); code != http.StatusAccepted {
				e.t.Fatalf("trigger %d slices: %d %+v", n, code, j)
			}
			j = waitJob(e.t, base, j.ID, 10*time.Minute)
			if runs[n] == nil {
				runs[n] = map[string][]float64{}
			}
			for k, v := range j.Timings {
				runs[n][k] = append(runs[n][k], v)
			}
		}
	}
	med := map[string]map[int]float64{}
	rss := map[int]float64{}
	for _, n := range sizes {
		for _, st := range stages {
			if med[st] == nil {
				med[st] = map[int]float64{}
			}
			if v, ok := runs[n][st]; ok {
				med[st][n] = median(v)
			}
		}
		out := filepath.Join(e.t.TempDir(), "seg.dcm")
		cmd := exec.Command(e.bin, "segment", dirs[n], "--model", "head-threshold", "-o", out)
		cmd.Env = append(os.Environ(), "SEGBRIDGE_MODELS_DIR="+e.models, "SEGBRIDGE_ORT_LIB="+fixture.ORTLibrary(e.t), "SEGBRIDGE_MODEL_FILES="+e.modelFiles())
		if b, err := cmd.CombinedOutput(); err != nil {
			e.t.Fatalf("segment %d slices: %v\n%s", n, err, b)
		}
		rss[n] = float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
	}

	// A stage grows no faster than the slices when its time for 4x the
	// slices is at most 4x; 10% is allowed for a shared machine's noise,
	// and stages under 5 ms at 100 slices are too short to judge.
	const allowed = 4 * 1.10
	tab := Table{Title: fmt.Sprintf("Growth: head-threshold on synthetic 512x512 series through the worker (median of %d runs)", runsPerSize),
		Columns: []string{"stage", "100 slices", "200 slices", "400 slices", "400 / 100", "linear"}}
	cell := func(v float64, unit string) string { return fmt.Sprintf("%.1f %s", v, unit) }
	worst, worstName := 0.0, ""
	row := func(name, unit string, by map[int]float64, judge bool) {
		r := by[400] / by[100]
		verdict := "yes"
		switch {
		case !judge:
			verdict = "(too short to judge)"
		case !(r <= allowed):
			verdict = "**no**"
		}
		if judge && r > worst {
			worst, worstName = r, name
		}
		tab.Rows = append(tab.Rows, []string{name, cell(by[100], unit), cell(by[200], unit), cell(by[400], unit), fmt.Sprintf("%.2f", r), verdict})
	}
	for _, st := range stages {
		if len(med[st]) == len(sizes) {
			row(st, "ms", med[st], med[st][100] >= 5)
		}
	}
	row("peak RSS of segbridge segment", "MiB", rss, true)
	tab.Notes = append(tab.Notes, fmt.Sprintf("400 / 100 is the growth for 4x the slices; a stage is linear (or better) at <= %.1f (4x, and 10%% for noise). "+
		"Each size is triggered by hand with force=true, in rounds over the sizes; parse is summed over the download goroutines, "+
		"so it counts their waits for a CPU too.", allowed))
	e.res.Tables = append(e.res.Tables, tab)
	for _, r := range tab.Rows {
		e.t.Logf("growth %-32s %12s %12s %12s %6s %s", r[0], r[1], r[2], r[3], r[4], r[5])
	}
	e.target("growth 100 -> 400 slices: every stage and peak RSS at most linear (worst: "+worstName+")", fmt.Sprintf("<= %.1f", allowed), worst, "x", worst <= allowed)
}

// ---- output ----

func (e *env) write() {
	dir := filepath.Join(e.root, "bench")
	if os.Getenv("BENCH_STEPS") != "" {
		// A partial run must not replace the committed results.
		dir = filepath.Join(dir, "out")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	b, _ := json.MarshalIndent(e.res, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		e.t.Fatal(err)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# segbridge benchmark results\n\nMeasured by `make bench` on %s: %s, %d cores, %s, Orthanc %s.\n", e.res.Date, e.res.CPU, e.res.Cores, e.res.Go, e.res.Orthanc)
	fmt.Fprintf(&md, "Each figure gives the median and, over several runs, the range.\n\n## Targets\n\n| target | wanted | measured | met |\n|---|---|---|---|\n")
	for _, t := range e.res.Targets {
		fmt.Fprintf(&md, "| %s | %s | %.2f %s | %s |\n", t.Name, t.Target, t.Measured, t.Unit, map[bool]string{true: "yes", false: "**no**"}[t.Met])
	}
	fmt.Fprintf(&md, "\nAll figures are on the CPU (ONNX Runtime's CPU provider): no GPU was available.\n")
	for _, tb := range e.res.Tables {
		fmt.Fprintf(&md, "\n## %s\n\n| %s |\n|%s\n", tb.Title, strings.Join(tb.Columns, " | "), strings.Repeat("---|", len(tb.Columns)))
		for _, r := range tb.Rows {
			fmt.Fprintf(&md, "| %s |\n", strings.Join(r, " | "))
		}
		for _, n := range tb.Notes {
			fmt.Fprintf(&md, "\n%s\n", n)
		}
	}
	for _, s := range e.res.Sections {
		fmt.Fprintf(&md, "\n## %s\n\n| figure | median | min | max | runs | note |\n|---|---:|---:|---:|---:|---|\n", s.Title)
		for _, f := range s.Figures {
			fmt.Fprintf(&md, "| %s | %.2f %s | %.2f | %.2f | %d | %s |\n", f.Name, f.Median, f.Unit, f.Min, f.Max, len(f.Runs), f.Note)
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&md, "\n%s\n", n)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(md.String()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("wrote bench/results.json and bench/RESULTS.md")
}

// ---- refuse ----

// benchRefuse stores a 600-slice 512x512 series (300 MB) and runs a serve
// whose voxel limit is 100 such slices: the job must fail from Orthanc's
// instance count and the first header, before any instance is downloaded,
// while the worker's memory stays near its idle figure.
func (e *env) benchRefuse() {
	const slices, limitSlices = 600, 100
	id := e.upload(e.makeBig(slices))
	port := orthanctest.FreePort(e.t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := e.start([]string{"serve"}, e.serveEnv(port, map[string]string{
		"SEGBRIDGE_MAX_VOXELS": fmt.Sprint(512 * 512 * limitSlices),
	}))
	waitHTTP(e.t, base+"/healthz", p)
	defer p.stop()
	idle := procStatusKiB(e.t, p.cmd.Process.Pid, "VmRSS")
	var j jobView
	if code := post(e.t, base+"/v1/series/"+id+"/segment?model=head-threshold", "", nil, &j); code != http.StatusAccepted {
		e.t.Fatalf("trigger: %d %+v", code, j)
	}
	start := time.Now()
	deadline := start.Add(5 * time.Minute)
	for j.State != "failed" && j.State != "done" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		getJSON(e.t, base+"/v1/jobs/"+j.ID, &j)
	}
	took := float64(time.Since(start).Microseconds()) / 1000
	peak := procStatusKiB(e.t, p.cmd.Process.Pid, "VmHWM")
	if j.State != "failed" || !strings.Contains(j.Error, "SEGBRIDGE_MAX_VOXELS") {
		e.t.Fatalf("the oversized series ended %s: %s", j.State, j.Error)
	}
	sec := Section{Title: fmt.Sprintf("Refusing a series over the limits: %d x 512x512 (300 MB), SEGBRIDGE_MAX_VOXELS = %d slices' worth", slices, limitSlices)}
	sec.Figures = append(sec.Figures,
		fig("serve RSS when idle, before the trigger", "MiB", []float64{idle / 1024}, ""),
		fig("serve peak RSS (VmHWM) after the job failed", "MiB", []float64{peak / 1024}, "the series' files alone are 300 MB"),
		fig("trigger to failed", "ms", []float64{took}, j.Error),
	)
	e.add(sec)
	e.target("a 600-slice 512x512 series over the limit is refused with the worker's memory near idle", "peak - idle <= 50 MiB",
		(peak-idle)/1024, "MiB", (peak-idle)/1024 <= 50)
}

// procStatusKiB reads one "kB" field of /proc/<pid>/status.
func procStatusKiB(t *testing.T, pid int, field string) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kib float64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%f kB", &kib); err != nil {
				t.Fatalf("%s: %q", field, line)
			}
			return kib
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
