package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/segbridge/segbridge/internal/fixture"
)

// pythonPlugin is Debian's orthanc-python plugin.
const pythonPlugin = "/usr/lib/orthanc/libOrthancPython.so.4.0"

// orthancCall sends a request to Orthanc with its credentials and returns the
// status and body.
func orthancCall(t *testing.T, s *system, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.orthanc.URL+path, nil)
	req.SetBasicAuth(s.orthanc.User, s.orthanc.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

// TestOrthancExplorer_PythonPlugin loads orthanc-lua/segbridge_explorer.py
// into Debian's Orthanc with the orthanc-python plugin, opens a series in the
// legacy Orthanc Explorer in headless Chromium, and presses its AI analysis
// button: the plugin forwards to the bridge with the bridge's API token
// (which the browser never sees), and the series page shows the job done.
func TestOrthancExplorer_PythonPlugin(t *testing.T) {
	if _, err := os.Stat(pythonPlugin); err != nil {
		t.Fatal("Orthanc's Python plugin is missing: run make deps (Debian package orthanc-python)")
	}
	apiToken := randomToken() + randomToken()
	s := setupSystemWith(t, map[string]string{
		"SEGBRIDGE_API_TOKEN": apiToken,
		// Only the button starts the MR series.
		"SEGBRIDGE_MODALITIES": "CT",
	}, map[string]any{
		"Plugins":      []string{pythonPlugin},
		"PythonScript": filepath.Join(fixture.Root(t), "orthanc-lua", "segbridge_explorer.py"),
		"Segbridge":    map[string]any{"ApiToken": apiToken},
	})
	src := fixture.MakeSeries(t, false, "--plane", "sagittal", "--step", "3", "--patient-id", "OE-1", "--seed", "5")
	id := s.upload(t, src.Dir)

	if code, js := orthancCall(t, s, http.MethodGet, "/plugins/explorer.js"); code != http.StatusOK || !strings.Contains(js, "segbridge-analyse") {
		t.Fatalf("Orthanc Explorer's plugin script: %d, the button is not in it", code)
	}
	if code, body := orthancCall(t, s, http.MethodGet, "/segbridge/config"); code != http.StatusOK || !strings.Contains(body, s.bridge+"/") {
		t.Errorf("/segbridge/config: %d %s", code, body)
	}
	if code, body := orthancCall(t, s, http.MethodPost, "/segbridge/series/..%2F..%2Fsystem/segment"); code != http.StatusNotFound {
		t.Errorf("a path that is not a series id: %d %s", code, body)
	}

	ctx := browser(t)
	keepScreenshotOnFailure(t, ctx)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(s.orthanc.User+":"+s.orthanc.Password))
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	}), chromedp.Navigate(s.orthanc.URL+"/app/explorer.html#series?uuid="+id)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the AI analysis button on the series page", `!!document.querySelector("#segbridge-analyse") && $("#segbridge-analyse").is(":visible")`, 20*time.Second)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#segbridge-analyse"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the series page showing the job's end", `/done|failed|refused/.test($("#segbridge-state .segbridge-text").text())`, 90*time.Second)
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`$("#segbridge-state .segbridge-text").text()`)); err != nil || text != "AI analysis: done" {
		t.Fatalf("the series page says %q (%v)", text, err)
	}
	link, err := chromedp.Run(ctx, chromedp.Evaluate[string](`$("#segbridge-state a.segbridge-link").attr("href")`))
	if err != nil {
		t.Fatal(err)
	}
	if *updateScreenshot {
		// The README shows the series page's left column with the button.
		shot, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS("#series .ui-block-a")))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fixture.Root(t), "docs", "orthanc-explorer-button.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var job jobView
	if code := s.call(t, http.MethodGet, "/v1/jobs/"+queueJobID(id), apiToken, nil, &job); code != http.StatusOK || job.State != "done" || job.Trigger != "manual" {
		t.Fatalf("job: %d %+v", code, job)
	}
	if link != "#series?uuid="+job.SEGSeriesID {
		t.Errorf("the page links %q, want the SEG series %s", link, job.SEGSeriesID)
	}
	// The Orthanc Explorer 2 snippet's POST reaches the same route (resolved
	// from OE2's /ui/app/), and the series is done already.
	url := oe2SeriesButton(t, "segbridge-analyse")
	resolved, err := neturl.Parse(s.orthanc.URL + "/ui/app/index.html")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := resolved.Parse(strings.ReplaceAll(url, "{UUID}", id))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := orthancCall(t, s, http.MethodPost, ref.Path); code != http.StatusOK || !strings.Contains(body, job.SEGSeriesID) {
		t.Errorf("OE2's button URL %s: %d %s, want 200 with the SEG", ref.Path, code, body)
	}
	code, body := orthancCall(t, s, http.MethodGet, "/segbridge/series/"+id)
	var sv seriesView
	if err := json.Unmarshal([]byte(body), &sv); code != http.StatusOK || err != nil || sv.State != "done" {
		t.Errorf("GET /segbridge/series/{id}: %d %s", code, body)
	}
}

// oe2SeriesButton reads orthanc-lua/oe2-buttons.json (an Orthanc
// configuration file, with // comments) and returns the Url of the series
// button with the given Id.
func oe2SeriesButton(t *testing.T, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture.Root(t), "orthanc-lua", "oe2-buttons.json"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "//") {
			lines = append(lines, l)
		}
	}
	var cfg struct {
		OrthancExplorer2 struct {
			UiOptions struct {
				CustomButtons map[string][]struct {
					HttpMethod, Id, Url string
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(strings.Join(lines, "\n")), &cfg); err != nil {
		t.Fatalf("oe2-buttons.json: %v", err)
	}
	for _, btn := range cfg.OrthancExplorer2.UiOptions.CustomButtons["series"] {
		if btn.Id == id {
			return btn.Url
		}
	}
	t.Fatalf("oe2-buttons.json has no series button %q", id)
	return ""
}

// queueJobID is the id of the reference model's job of a series.
func queueJobID(series string) string { return series + ".head-threshold.1_0_0" }
