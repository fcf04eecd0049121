package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanctest"
)

// hostileSeries writes the series of the hardening issue: n MR instances
// whose Rows and Columns are written with VR UL as 2147483648, with
// BitsAllocated 32 and empty PixelData. Its size arithmetic wrapped to 0 and
// crashed segbridge serve.
func hostileSeries(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	series := "1.2.826.0.1.3680043.8.498.777.1"
	for k := 0; k < n; k++ {
		sop := fmt.Sprintf("1.2.826.0.1.3680043.8.498.777.2.%d", k)
		vals := []struct {
			tg tag.Tag
			vr string
			v  any
		}{
			{tag.MediaStorageSOPClassUID, "", []string{"1.2.840.10008.5.1.4.1.1.4"}},
			{tag.MediaStorageSOPInstanceUID, "", []string{sop}},
			{tag.TransferSyntaxUID, "", []string{"1.2.840.10008.1.2.1"}},
			{tag.SOPClassUID, "", []string{"1.2.840.10008.5.1.4.1.1.4"}},
			{tag.SOPInstanceUID, "", []string{sop}},
			{tag.StudyInstanceUID, "", []string{"1.2.826.0.1.3680043.8.498.777.3"}},
			{tag.SeriesInstanceUID, "", []string{series}},
			{tag.Modality, "", []string{"MR"}},
			{tag.PatientID, "", []string{"HOSTILE"}},
			{tag.ImagePositionPatient, "", []string{"0", "0", fmt.Sprint(k)}},
			{tag.ImageOrientationPatient, "", []string{"1", "0", "0", "0", "1", "0"}},
			{tag.PixelSpacing, "", []string{"1", "1"}},
			{tag.SamplesPerPixel, "", []int{1}},
			{tag.PhotometricInterpretation, "", []string{"MONOCHROME2"}},
			{tag.Rows, "UL", []int{2147483648}},
			{tag.Columns, "UL", []int{2147483648}},
			{tag.BitsAllocated, "", []int{32}},
			{tag.BitsStored, "", []int{32}},
			{tag.HighBit, "", []int{31}},
			{tag.PixelRepresentation, "", []int{0}},
			{tag.PixelData, "", dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: []byte{}}},
		}
		var ds dicom.Dataset
		for _, x := range vals {
			e, err := dicom.NewElement(x.tg, x.v)
			if err != nil {
				t.Fatalf("element %v: %v", x.tg, err)
			}
			if x.vr != "" {
				e.RawValueRepresentation = x.vr
			}
			ds.Elements = append(ds.Elements, e)
		}
		slices.SortFunc(ds.Elements, func(a, b *dicom.Element) int { return a.Tag.Compare(b.Tag) })
		var buf bytes.Buffer
		if err := dicom.Write(&buf, ds, dicom.SkipVRVerification()); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.dcm", k)), buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// waitJob polls a series until its job reaches state, failing on another end.
func (s *system) waitJob(t *testing.T, series, state string, within time.Duration) jobView {
	t.Helper()
	var last seriesView
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		_, v := s.seriesStatusTok(t, series)
		last = v
		if len(v.Jobs) > 0 && v.Jobs[0].State == state {
			return v.Jobs[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("series %s: no %s job within %s: %+v", series, state, within, last)
	return jobView{}
}

// TestHardening_MalformedUploadsDoNotStopTheService stores the series that
// crashed segbridge, and a truncated one; each job fails with a reason a
// person can act on, the service keeps serving, and a good series right
// after is segmented.
func TestHardening_MalformedUploadsDoNotStopTheService(t *testing.T) {
	s := setupSystem(t, nil)
	hostile := s.upload(t, hostileSeries(t, 4))
	j := s.waitJob(t, hostile, "failed", 60*time.Second)
	if !strings.Contains(j.Error, "65535") || j.Attempts != 1 {
		t.Fatalf("hostile series: %+v, want a failure naming the 65535 bound on the first attempt", j)
	}
	t.Logf("reason shown: %s", j.Error)

	// One instance whose pixel data holds 700 bytes fewer than its Rows and
	// Columns need (a consistent element, so Orthanc stores it).
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "8", "--patient-id", "CUT", "--seed", "21")
	files, _ := filepath.Glob(filepath.Join(src.Dir, "*.dcm"))
	data, _ := os.ReadFile(files[len(files)/2])
	pix := bytes.LastIndex(data, []byte{0xe0, 0x7f, 0x10, 0x00, 'O', 'W', 0, 0})
	if pix < 0 {
		t.Fatal("no PixelData element")
	}
	n := binary.LittleEndian.Uint32(data[pix+8:])
	binary.LittleEndian.PutUint32(data[pix+8:], n-700)
	if err := os.WriteFile(files[len(files)/2], data[:len(data)-700], 0o600); err != nil {
		t.Fatal(err)
	}
	cut := s.upload(t, src.Dir)
	j = s.waitJob(t, cut, "failed", 60*time.Second)
	if !strings.Contains(j.Error, "pixel data holds") {
		t.Fatalf("truncated series: %+v", j)
	}
	t.Logf("reason shown: %s", j.Error)

	good := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "GOOD", "--seed", "22")
	id := s.upload(t, good.Dir)
	v := s.waitDone(t, id, 60*time.Second)
	s.checkSEG(t, v.Jobs[0].SEGSeriesID, good)
	if code, _ := s.seriesStatus(t, hostile); code != http.StatusOK {
		t.Fatalf("the bridge answers %d after the hostile series", code)
	}
}

// remoteWorkerEnv is the environment of `segbridge worker` processes for s.
func remoteWorkerEnv(s *system, natsAddr, token, modelPath string) map[string]string {
	return map[string]string{
		"ORTHANC_URL":          s.orthanc.URL,
		"ORTHANC_USER":         s.orthanc.User,
		"ORTHANC_PASSWORD":     s.orthanc.Password,
		"SEGBRIDGE_NATS_URL":   "nats://" + natsAddr,
		"SEGBRIDGE_NATS_TOKEN": token,
		"SEGBRIDGE_ACK_WAIT":   "2s",
		"MODEL_PATH":           modelPath,
		"SEGBRIDGE_ORT_LIB":    s.env["SEGBRIDGE_ORT_LIB"],
		"SEGBRIDGE_LOG_FORMAT": "json",
		"SEGBRIDGE_LOG_LEVEL":  "debug",
	}
}

// killWhenRunning waits until the series' job runs on a worker at the given
// attempt, then SIGKILLs that worker.
func (s *system) killWhenRunning(t *testing.T, p *process, series string, attempt int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, v := s.seriesStatusTok(t, series)
		if len(v.Jobs) > 0 && v.Jobs[0].State == "running" && v.Jobs[0].Attempts == attempt && v.Jobs[0].Stage == "inference" {
			break
		}
		if len(v.Jobs) > 0 && (v.Jobs[0].State == "done" || v.Jobs[0].State == "failed") {
			t.Fatalf("job ended before the worker could be killed: %+v", v.Jobs[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("no running attempt %d: %+v", attempt, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// TestHardening_WorkerKilledEveryTime: a worker that dies (SIGKILL, as an
// OOM kill does) on every delivery never says why; the job must still end,
// failed with "gave up after N attempts", and force=true and DELETE must work
// on jobs whose worker is gone.
func TestHardening_WorkerKilledEveryTime(t *testing.T) {
	natsAddr := fmt.Sprintf("127.0.0.1:%d", orthanctest.FreePort(t))
	token := randomToken()
	slow := filepath.Join(fixture.Root(t), "testdata/models/slow-slices.yaml")
	s := setupSystem(t, map[string]string{
		"SEGBRIDGE_WORKERS":      "0",
		"SEGBRIDGE_NATS_LISTEN":  natsAddr,
		"SEGBRIDGE_NATS_TOKEN":   token,
		"SEGBRIDGE_ACK_WAIT":     "2s",
		"SEGBRIDGE_MAX_ATTEMPTS": "2",
		"SEGBRIDGE_API_TOKEN":    randomToken(),
		"MODEL_PATH":             slow,
	})
	env := remoteWorkerEnv(s, natsAddr, token, slow)
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "KILL", "--seed", "31")
	id := s.upload(t, src.Dir)

	t.Run("killed on every attempt: failed, gave up after 2 attempts", func(t *testing.T) {
		for attempt := 1; attempt <= 2; attempt++ {
			p := startProcess(t, env, "worker")
			s.killWhenRunning(t, p, id, attempt)
		}
		start := time.Now()
		j := s.waitJob(t, id, "failed", 30*time.Second)
		if !strings.HasPrefix(j.Error, "gave up after 2 attempts") {
			t.Fatalf("reason %q", j.Error)
		}
		t.Logf("failed %s after the second kill: %s", time.Since(start).Round(time.Millisecond), j.Error)
	})

	t.Run("force=true runs it again", func(t *testing.T) {
		var v jobView
		if code := s.api(t, http.MethodPost, "/v1/series/"+id+"/segment?force=true", &v); code != http.StatusAccepted || v.Generation != 2 {
			t.Fatalf("force: %d %+v", code, v)
		}
		p := startProcess(t, env, "worker")
		done := s.waitJob(t, id, "done", 90*time.Second)
		if done.Generation != 2 {
			t.Fatalf("done %+v", done)
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
	})

	t.Run("DELETE and force on a running job whose worker is gone", func(t *testing.T) {
		other := fixture.MakeSeries(t, false, "--plane", "coronal", "--step", "2", "--patient-id", "GONE", "--seed", "32")
		oid := s.upload(t, other.Dir)
		p := startProcess(t, env, "worker")
		s.killWhenRunning(t, p, oid, 1)
		_, v := s.seriesStatusTok(t, oid)
		jobID := v.Jobs[0].ID
		var c jobView
		if code := s.api(t, http.MethodDelete, "/v1/jobs/"+jobID, &c); code != http.StatusOK || c.State != "cancelled" {
			t.Fatalf("DELETE of a running job whose worker is gone: %d %+v", code, c)
		}
		// A new worker gets the message back when the dead one's lease lapses,
		// and drops it: the job stays cancelled and makes no SEG.
		w := startProcess(t, env, "worker")
		waitFor(t, 30*time.Second, "the worker dropping the cancelled job's message", func() bool {
			return strings.Contains(w.logs.String(), "skipping a stale job message")
		})
		if j := s.job(t, jobID); j.State != "cancelled" {
			t.Fatalf("state %s after redelivery", j.State)
		}
		// force=true queues it anew and it runs.
		var f jobView
		if code := s.api(t, http.MethodPost, "/v1/series/"+oid+"/segment?force=true", &f); code != http.StatusAccepted {
			t.Fatalf("force after cancel: %d %+v", code, f)
		}
		if j := s.waitJob(t, oid, "done", 90*time.Second); j.Generation != 2 {
			t.Fatalf("%+v", j)
		}
		waitStable(t, s.orthanc, oid)
		if segs := s.segSeriesOf(t, oid); len(segs) != 1 {
			t.Fatalf("%d SEG series, want 1", len(segs))
		}
	})
}

// countingProxy forwards to Orthanc and counts requests by path.
type countingProxy struct {
	mu    sync.Mutex
	paths []string
	n     atomic.Int64
}

func (c *countingProxy) start(t *testing.T, target string) string {
	t.Helper()
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.paths = append(c.paths, r.URL.Path)
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (c *countingProxy) count(re *regexp.Regexp) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.paths {
		if re.MatchString(p) {
			n++
		}
	}
	return n
}

func (c *countingProxy) reset() {
	c.mu.Lock()
	c.paths = nil
	c.mu.Unlock()
}

// TestHardening_DoneCheckIsBoundedAndOursOnly polls a series whose job the
// bridge does not know (its data was lost) while its study holds segbridge's
// SEG and SEGs of another maker that claim the same model: the answer is
// segbridge's SEG, the others never count, and however often a frontend
// polls, the done-check costs a bounded number of Orthanc requests.
func TestHardening_DoneCheckIsBoundedAndOursOnly(t *testing.T) {
	s := setupSystem(t, nil)
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "4", "--patient-id", "POLL", "--seed", "41")
	id := s.upload(t, src.Dir)
	v := s.waitDone(t, id, 60*time.Second)
	ours := v.Jobs[0].SEGSeriesID
	// Three SEGs by another maker: copies of ours with Manufacturer changed.
	var segInst struct{ Instances []string }
	if err := s.orthanc.GetJSON(context.Background(), "/series/"+ours, &segInst); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		body := fmt.Sprintf(`{"Replace":{"Manufacturer":"other vendor %d","SeriesDescription":"foreign %d"},"Force":true}`, i, i)
		req, _ := http.NewRequest(http.MethodPost, s.orthanc.URL+"/series/"+ours+"/modify", strings.NewReader(body))
		req.SetBasicAuth(s.orthanc.User, s.orthanc.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("copy SEG: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	if n := len(s.segSeriesOf(t, id)); n != 4 {
		t.Fatalf("%d SEG series in the study, want 4", n)
	}
	proxy := &countingProxy{}
	s.restartServe(t, map[string]string{
		"ORTHANC_URL":        proxy.start(t, s.orthanc.URL),
		"SEGBRIDGE_DATA_DIR": filepath.Join(t.TempDir(), "lost"),
	})
	proxy.reset()
	start := time.Now()
	const polls = 100
	for i := 0; i < polls; i++ {
		_, sv := s.seriesStatus(t, id)
		if sv.State != "done" || len(sv.Jobs) != 1 || sv.Jobs[0].SEGSeriesID != ours {
			t.Fatalf("poll %d: %+v, want done with segbridge's SEG %s", i, sv, ours)
		}
	}
	took := time.Since(start)
	content := proxy.count(regexp.MustCompile(`^/instances/[^/]+/content/`))
	lists := proxy.count(regexp.MustCompile(`^/studies/[^/]+/series$`))
	// Each SEG instance is read once (4 reads for ours, 1 for each foreign
	// one, which is known not ours from its Manufacturer); the study's list
	// once per two seconds.
	maxLists := int(took/(2*time.Second)) + 1
	t.Logf("%d polls in %s: %d content reads, %d study lists", polls, took.Round(time.Millisecond), content, lists)
	if content > 4+3 || lists > maxLists {
		t.Fatalf("%d polls cost %d content reads (want <= 7) and %d study lists (want <= %d)", polls, content, lists, maxLists)
	}
	var jobs struct{ Jobs []jobView }
	s.call(t, http.MethodGet, "/v1/jobs", "", nil, &jobs)
	if len(jobs.Jobs) != 0 {
		t.Fatalf("polling wrote job state: %+v", jobs.Jobs)
	}

	t.Run("only segbridge's SEG counts", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodDelete, s.orthanc.URL+"/series/"+ours, nil)
		req.SetBasicAuth(s.orthanc.User, s.orthanc.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("delete our SEG: %v", err)
		}
		resp.Body.Close()
		waitFor(t, 10*time.Second, "the cached answer to expire", func() bool {
			_, sv := s.seriesStatus(t, id)
			return sv.State == "none"
		})
	})
}

// TestHardening_IntakeAppliesTheWholeRules: a model whose applies_to names a
// series description: the webhook skips other series with a typed reason
// that the API and /metrics show, a manual trigger answers 422 naming the
// rule, and force=true runs it anyway.
func TestHardening_IntakeAppliesTheWholeRules(t *testing.T) {
	root := fixture.Root(t)
	manifest, err := os.ReadFile(filepath.Join(root, "testdata/models/head-threshold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := strings.Replace(string(manifest), "  modalities: [MR]", "  modalities: [MR]\n  series_description: \"(?i)flair\"", 1)
	m = strings.Replace(m, "file: head-threshold.onnx", "file: "+filepath.Join(root, "testdata/models/head-threshold.onnx"), 1)
	dir := t.TempDir()
	path := filepath.Join(dir, "flair-only.yaml")
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	s := setupSystem(t, map[string]string{"MODEL_PATH": path})
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "8", "--patient-id", "RULES", "--seed", "51")
	id := s.upload(t, src.Dir)
	waitStable(t, s.orthanc, id)
	if _, v := s.seriesStatus(t, id); v.State != "none" {
		t.Fatalf("a T1 series was queued for a FLAIR-only model: %+v", v)
	}
	resp, err := http.Get(s.bridge + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `segbridge_series_skipped_total{reason="model_does_not_apply",trigger="webhook"} 1`; !strings.Contains(string(b), want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if !strings.Contains(s.logs.String(), `"reason":"model_does_not_apply"`) {
		t.Error("the log does not say why the series was skipped")
	}
	var e struct{ Error string }
	if code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment", "", nil, &e); code != http.StatusUnprocessableEntity || !strings.Contains(e.Error, "flair") {
		t.Fatalf("manual trigger: %d %q, want 422 naming the rule", code, e.Error)
	}
	var v jobView
	if code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment?force=true", "", nil, &v); code != http.StatusAccepted {
		t.Fatalf("forced trigger: %d %+v", code, v)
	}
	s.waitDone(t, id, 60*time.Second)
}

// TestHardening_ASeriesOfNonImagesIsSkipped uploads an MR series of objects
// with no pixels, modelled on Siemens' PhoenixZIPReport series (CSA
// Non-Image instances filed with the study's images): the automatic
// trigger's job ends skipped, saying the series holds no images, not failed
// (which would mark every such study ai-failed), and so does a forced
// manual trigger.
func TestHardening_ASeriesOfNonImagesIsSkipped(t *testing.T) {
	s := setupSystem(t, nil)
	dir := t.TempDir()
	script := `import sys, pydicom, datetime
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid, ExplicitVRLittleEndian
study, series = generate_uid(), generate_uid()
for i in range(2):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.3.12.2.1107.5.9.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "MR", "PhoenixZIPReport", 99, i + 1
    ds.PatientName, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "Phoenix^Report", "PHOENIX", study, series
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RAWDATA", "PHOENIXZIPREPORT"]
    ds.add_new(0x00290010, "LO", "SIEMENS CSA NON-IMAGE")
    ds.add_new(0x00291010, "OB", bytes(range(256)) * 4)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(sys.argv[1] + "/report%d.dcm" % i, write_like_original=False)`
	if b, err := exec.Command(fixture.Python, "-c", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("make the series: %v\n%s", err, b)
	}
	id := s.upload(t, dir)
	var j jobView
	waitFor(t, 60*time.Second, "the automatic trigger's job to end", func() bool {
		_, v := s.seriesStatus(t, id)
		if len(v.Jobs) == 0 {
			return false
		}
		j = v.Jobs[0]
		return j.State != "queued" && j.State != "running"
	})
	if j.State != "skipped" || !strings.Contains(j.Error, "holds no images") || !strings.Contains(j.Error, "1.3.12.2.1107.5.9.1") {
		t.Fatalf("job %s %q, want skipped saying the series holds no images", j.State, j.Error)
	}
	t.Logf("skipped: %s", j.Error)
	var f jobView
	if code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment?force=true", "", nil, &f); code != http.StatusAccepted {
		t.Fatalf("forced trigger: %d %+v", code, f)
	}
	waitFor(t, 60*time.Second, "the forced job to end", func() bool {
		j = s.job(t, f.ID)
		return j.Generation == 2 && j.State != "queued" && j.State != "running"
	})
	if j.State != "skipped" || !strings.Contains(j.Error, "holds no images") {
		t.Fatalf("forced job %s %q, want skipped", j.State, j.Error)
	}
}
