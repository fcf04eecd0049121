package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/notify"
	"github.com/segbridge/segbridge/internal/preview"
)

// updateScreenshot writes the status page's screenshot for the README
// (docs/status-page.png) from TestStatusPage_Browser's run: make screenshot.
var updateScreenshot = flag.Bool("update-screenshot", false, "write docs/status-page.png from the browser test")

// browser starts Debian's headless Chromium for a test.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: run make deps (Debian package chromium)")
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artifacts is where browser tests keep screenshots of failures:
// $SEGBRIDGE_TEST_ARTIFACTS, else bin/test-artifacts in the repository.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SEGBRIDGE_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(fixture.Root(t), "bin", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// keepScreenshotOnFailure saves what the browser shows when the test fails.
func keepScreenshotOnFailure(t *testing.T, ctx context.Context) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		shot, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		path := filepath.Join(artifacts(t), fmt.Sprintf("%s-%d.png", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().Unix()))
		if err := os.WriteFile(path, shot, 0o644); err == nil {
			t.Logf("screenshot of the failure: %s", path)
		}
	})
}

// waitJS polls a JavaScript expression until it is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string, within time.Duration) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, within+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(wctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(within))); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
		t.Fatalf("%s: not within %s (%v)\npage:\n%s", what, within, err, html)
	}
}

// recordStates makes the page keep every state the series' row was drawn
// with, in order, in window.seenStates: rows are replaced when redrawn, so
// each added row is one drawing.
const recordStates = `(() => {
  window.seenStates = [];
  const seen = (row) => {
    if (row.nodeType === 1 && row.matches('tr[data-series-id="%s"]')) {
      const s = row.getAttribute("data-state");
      if (window.seenStates[window.seenStates.length - 1] !== s) window.seenStates.push(s);
    }
  };
  new MutationObserver((recs) => { for (const r of recs) for (const n of r.addedNodes) seen(n); })
    .observe(document.getElementById("series-body"), { childList: true });
  return true;
})()`

// pageImage reads back, through a canvas, the preview image the page shows.
const pageImage = `(() => {
  const img = document.querySelector('tr[data-result-of="%s"] img');
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  c.getContext("2d").drawImage(img, 0, 0);
  return c.toDataURL("image/png");
})()`

// TestStatusPage_Browser is the status page in Debian's headless Chromium
// against the whole system: a series arrives (automatic triggers are off for
// MR here, so only the button starts it), the page lists it, the button is
// pressed with the keyboard, the row goes queued → running → done through
// the event stream, and the preview loads: a PNG whose coloured pixels are
// exactly the voxels the SEG (read by pydicom) holds, on the planes the
// layout names. The volume the page shows is the SR's and the SEG's own. The
// SR and the preview series are in Orthanc beside the SEG. With an API token
// the page asks for it once.
func TestStatusPage_Browser(t *testing.T) {
	hook := newHookReceiver(t)
	secret := randomToken()
	s := setupSystem(t, map[string]string{
		"SEGBRIDGE_OUTPUTS": "seg,sr,preview",
		// Automatic triggers take only CT: the MR series waits for the button.
		"SEGBRIDGE_MODALITIES":    "CT",
		"SEGBRIDGE_NOTIFY_URL":    hook.srv.URL + "/segbridge-hook",
		"SEGBRIDGE_NOTIFY_SECRET": secret,
	})
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "UI-1", "--seed", "3")
	id := s.upload(t, src.Dir)

	ctx := browser(t)
	keepScreenshotOnFailure(t, ctx)
	row := fmt.Sprintf(`tr[data-series-id=%q]`, id)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.bridge+"/?series="+id)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the series listed, not analysed", fmt.Sprintf(`!!document.querySelector('%s[data-state="none"]')`, row), 20*time.Second)
	waitJS(t, ctx, "the event stream live", `document.getElementById("connection").textContent === "Live"`, 10*time.Second)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(recordStates, id))); err != nil {
		t.Fatal(err)
	}

	// The page focuses the series' button (it was named in the URL): Enter
	// presses it, as a keyboard user would.
	focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.getAttribute("aria-label") || ""`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(focused, "AI analysis of ") {
		t.Fatalf("focus is on %q, want the series' AI analysis button", focused)
	}
	pressed := time.Now()
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the preview image loaded", fmt.Sprintf(`(() => { const i = document.querySelector('tr[data-result-of="%s"] img'); return !!i && i.complete && i.naturalWidth > 0; })()`, id), 90*time.Second)
	took := time.Since(pressed)
	t.Logf("button press to preview on screen: %.2f s", took.Seconds())

	states, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.seenStates`))
	if err != nil {
		t.Fatal(err)
	}
	if i, j, k := slices.Index(states, "queued"), slices.Index(states, "running"), slices.Index(states, "done"); i < 0 || j < i || k < j || states[len(states)-1] != "done" {
		t.Fatalf("the row showed states %v, want queued, running, done in that order", states)
	} else {
		t.Logf("the row showed %v", states)
	}

	// The job as the API has it, and the preview's layout.
	jobID, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('%s').getAttribute("data-job-id")`, row)))
	if err != nil {
		t.Fatal(err)
	}
	var job jobView
	var full struct {
		SRSeriesID      string `json:"sr_series_id"`
		PreviewSeriesID string `json:"preview_series_id"`
		SEGInstanceID   string `json:"seg_instance_id"`
		Volumes         []struct {
			Name string  `json:"name"`
			ML   float64 `json:"ml"`
		} `json:"volumes"`
	}
	if code := s.call(t, http.MethodGet, "/v1/jobs/"+jobID, "", nil, &job); code != http.StatusOK || job.State != "done" || job.Trigger != "manual" {
		t.Fatalf("job %s: %d %+v", jobID, code, job)
	}
	s.call(t, http.MethodGet, "/v1/jobs/"+jobID, "", nil, &full)
	var result struct {
		Preview  preview.Layout `json:"preview"`
		Segments []struct {
			Name     string  `json:"name"`
			Voxels   int     `json:"voxels"`
			VolumeML float64 `json:"volume_ml"`
		} `json:"segments"`
	}
	if code := s.call(t, http.MethodGet, "/v1/jobs/"+jobID+"/result", "", nil, &result); code != http.StatusOK || len(result.Preview.Panels) != 3 {
		t.Fatalf("result: %d %+v", code, result)
	}

	// The SEG, read by pydicom, on the source grid.
	segPath := s.segFile(t, job.SEGSeriesID)
	mask, _ := segMask(t, segPath, src)

	// The image the browser shows: coloured exactly on the SEG's voxels.
	dataURL, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(pageImage, id)))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(dataURL, "data:image/png;base64,"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the page's preview is not a PNG: %v", err)
	}
	tr := src.Truth
	checkPreviewPixels(t, img, &result.Preview, mask, tr.Cols, tr.Rows)

	// The volume on the page is the SEG's voxels times its voxel volume, and
	// the SR's.
	pageML, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('tr[data-result-of="%s"] tr[data-segment="Head"] td[data-ml]').getAttribute("data-ml")`, id)))
	if err != nil {
		t.Fatal(err)
	}
	shown, err := strconv.ParseFloat(pageML, 64)
	if err != nil {
		t.Fatal(err)
	}
	sr := s.readSR(t, full.SRSeriesID, segPath)
	segML := sr.SEGVolumesML["1"]
	if len(sr.Groups) != 1 || math.Abs(sr.Groups[0].Volume.Value-segML) > 0.001*segML || math.Abs(shown-segML) > 0.001*segML ||
		len(full.Volumes) != 1 || math.Abs(full.Volumes[0].ML-segML) > 0.001*segML {
		t.Errorf("head volume: page %.3f mL, SR %+v, status %+v, SEG voxels x voxel volume %.3f mL", shown, sr.Groups, full.Volumes, segML)
	} else {
		t.Logf("head volume on the page: %.1f mL (SR %.3f, SEG %.3f)", shown, sr.Groups[0].Volume.Value, segML)
	}

	// The preview series, rendered by Orthanc itself.
	s.checkPreviewSeries(t, full.PreviewSeriesID, id, mask, tr.Cols, tr.Rows, src)

	// The caller was told, once, signed, with the status API's body.
	n := hook.wait(t, 30*time.Second)
	if n.header.Get(notify.HeaderEvent) != "job.done" || !strings.HasPrefix(n.header.Get(notify.HeaderDelivery), jobID+".") ||
		!notify.Verify([]byte(secret), n.header.Get(notify.HeaderTimestamp), n.body, n.header.Get(notify.HeaderSignature)) {
		t.Errorf("notification headers %v do not verify", n.header)
	}
	var told jobView
	if err := json.Unmarshal(n.body, &told); err != nil || told.ID != jobID || told.State != "done" || told.SEGSeriesID != job.SEGSeriesID || told.SEGURL == "" {
		t.Errorf("notification body %s: %v", n.body, err)
	}

	if *updateScreenshot {
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(fixture.Root(t), "docs", "status-page.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}

	t.Run("with an API token the page asks for it once", func(t *testing.T) {
		token := randomToken() + randomToken()
		s.restartServe(t, map[string]string{"SEGBRIDGE_API_TOKEN": token})
		if err := chromedp.Do(ctx, chromedp.Navigate(s.bridge+"/")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the token form", `!document.getElementById("token-section").hidden`, 10*time.Second)
		if err := chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.CSS("#token-input"), "wrong-token"),
			chromedp.Click(chromedp.CSS("#token-form button"))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the wrong token refused", `document.getElementById("token-error").textContent.includes("refused")`, 10*time.Second)
		if err := chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.CSS("#token-input"), token),
			chromedp.Click(chromedp.CSS("#token-form button"))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the series done with the token", fmt.Sprintf(`!!document.querySelector('%s[data-state="done"]')`, row), 20*time.Second)
		// Once: a reload in the same tab does not ask again.
		if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the list after a reload", fmt.Sprintf(`!!document.querySelector('%s')`, row), 20*time.Second)
		if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("token-section").hidden`)); err != nil || !hidden {
			t.Errorf("the page asked for the token again after a reload (%v)", err)
		}
	})
}

// hookReceiver stands for the caller's system behind SEGBRIDGE_NOTIFY_URL.
type hookReceiver struct {
	srv *httptest.Server
	got chan hookRequest
}

type hookRequest struct {
	header http.Header
	body   []byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{got: make(chan hookRequest, 16)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.got <- hookRequest{r.Header.Clone(), b}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) wait(t *testing.T, within time.Duration) hookRequest {
	t.Helper()
	select {
	case r := <-h.got:
		return r
	case <-time.After(within):
		t.Fatal("no notification")
		return hookRequest{}
	}
}

// checkPreviewPixels checks each pixel of a three-plane preview against the
// mask voxel the layout says it shows: coloured exactly where the mask is.
func checkPreviewPixels(t *testing.T, img image.Image, lay *preview.Layout, mask []uint8, cols, rows int) {
	t.Helper()
	if img.Bounds().Dx() != lay.Width || img.Bounds().Dy() != lay.Height {
		t.Fatalf("preview %v, layout %dx%d", img.Bounds(), lay.Width, lay.Height)
	}
	for _, p := range lay.Panels {
		masked, wrong := 0, 0
		for y := p.Y; y < p.Y+p.Height; y++ {
			for x := p.X; x < p.X+p.Width; x++ {
				v, _ := p.Voxel(x, y)
				in := mask[v[0]+cols*(v[1]+rows*v[2])] != 0
				r, g, b, _ := img.At(x, y).RGBA()
				if tinted := !(r == g && g == b); tinted != in {
					wrong++
				}
				if in {
					masked++
				}
			}
		}
		if masked == 0 || wrong > 0 {
			t.Errorf("%s plane: %d of %d pixels disagree with the SEG (%d on the mask)", p.Name, wrong, p.Width*p.Height, masked)
		}
	}
}

// srReport is what testdata/tools/readsr.py reads from an SR.
type srReport struct {
	Template string `json:"template"`
	Groups   []struct {
		TrackingIdentifier string `json:"tracking_identifier"`
		Volume             struct {
			Value float64 `json:"value"`
		} `json:"volume"`
	} `json:"groups"`
	SEGVolumesML map[string]float64 `json:"seg_volumes_ml"`
}

// readSR downloads the SR series' instance, validates it with dciodvfy and
// reads it (and the SEG's own volumes) with pydicom.
func (s *system) readSR(t *testing.T, srSeriesID, segPath string) srReport {
	t.Helper()
	ctx := context.Background()
	var ser struct {
		Instances     []string
		MainDicomTags map[string]string
	}
	if err := s.orthanc.GetJSON(ctx, "/series/"+srSeriesID, &ser); err != nil {
		t.Fatalf("SR series: %v", err)
	}
	if len(ser.Instances) != 1 || ser.MainDicomTags["Modality"] != "SR" {
		t.Fatalf("SR series %s: %d instances, modality %s", srSeriesID, len(ser.Instances), ser.MainDicomTags["Modality"])
	}
	b, err := s.orthanc.Get(ctx, "/instances/"+ser.Instances[0]+"/file")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sr.dcm")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if errs, _ := fixture.Dciodvfy(t, path); len(errs) > 0 {
		t.Errorf("dciodvfy SR:\n%s", strings.Join(errs, "\n"))
	}
	out, err := exec.Command(fixture.Python, filepath.Join(fixture.Root(t), "testdata/tools/readsr.py"), path, segPath).Output()
	if err != nil {
		t.Fatalf("readsr.py: %v", err)
	}
	var r srReport
	if err := json.Unmarshal(out, &r); err != nil || r.Template != "1500" {
		t.Fatalf("readsr.py: %v %s", err, out)
	}
	return r
}

// checkPreviewSeries checks the burned-in preview series in Orthanc: in the
// source's study, one instance per slice holding mask, and Orthanc's own
// rendering of one is coloured exactly on that slice's mask.
func (s *system) checkPreviewSeries(t *testing.T, previewSeriesID, sourceID string, mask []uint8, cols, rows int, src *fixture.Series) {
	t.Helper()
	ctx := context.Background()
	var ser, source struct {
		ParentStudy   string
		Instances     []string
		MainDicomTags map[string]string
	}
	if err := s.orthanc.GetJSON(ctx, "/series/"+previewSeriesID, &ser); err != nil {
		t.Fatalf("preview series: %v", err)
	}
	if err := s.orthanc.GetJSON(ctx, "/series/"+sourceID, &source); err != nil {
		t.Fatal(err)
	}
	plane := cols * rows
	withMask := 0
	for k := range src.Truth.Depth {
		if slices.Contains(mask[k*plane:(k+1)*plane], 1) {
			withMask++
		}
	}
	if ser.ParentStudy != source.ParentStudy || ser.MainDicomTags["Modality"] != "OT" || len(ser.Instances) != withMask {
		t.Fatalf("preview series: study %s (source %s), modality %s, %d instances for %d slices with mask",
			ser.ParentStudy, source.ParentStudy, ser.MainDicomTags["Modality"], len(ser.Instances), withMask)
	}
	inst := ser.Instances[len(ser.Instances)/2]
	var tags map[string]struct {
		Value any
	}
	if err := s.orthanc.GetJSON(ctx, "/instances/"+inst+"/tags", &tags); err != nil {
		t.Fatal(err)
	}
	ref := ""
	if seq, ok := tags["0008,2112"].Value.([]any); ok && len(seq) > 0 {
		if item, ok := seq[0].(map[string]any); ok {
			if el, ok := item["0008,1155"].(map[string]any); ok {
				ref, _ = el["Value"].(string)
			}
		}
	}
	k := -1
	for i, sl := range src.Truth.Slices {
		if sl.SOPInstanceUID == ref {
			k = i
		}
	}
	if k < 0 {
		t.Fatalf("preview instance %s names source %q, not a slice of the series", inst, ref)
	}
	b, err := s.orthanc.Get(ctx, "/instances/"+inst+"/preview")
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Orthanc's preview of the preview series is not a PNG: %v", err)
	}
	if img.Bounds().Dx() != cols || img.Bounds().Dy() != rows+preview.CaptionHeight {
		t.Fatalf("Orthanc renders %v, want %dx%d", img.Bounds(), cols, rows+preview.CaptionHeight)
	}
	wrong := 0
	for p := range plane {
		r, g, bb, _ := img.At(p%cols, p/cols).RGBA()
		if tinted := !(r == g && g == bb); tinted != (mask[k*plane+p] != 0) {
			wrong++
		}
	}
	if wrong > 0 {
		t.Errorf("Orthanc's rendering of slice %d's preview: %d pixels disagree with the SEG", k, wrong)
	}
}
