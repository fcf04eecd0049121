package orthanctest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanctest"
)

// TestServer_KillLosesStableSeries pins down the Orthanc behaviour that the
// reconciler's pending set exists for: Orthanc keeps its "not yet stable"
// series in memory only, so a series that was arriving when Orthanc was
// killed is reported stable (IsStable) as soon as Orthanc is back, and no
// StableSeries change is ever logged for it. If a new Orthanc release
// changes this, this test says so.
func TestServer_KillLosesStableSeries(t *testing.T) {
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "8", "--patient-id", "KILL", "--seed", "11")
	// StableAge 2 s, as in the e2e harness: the kill comes a few
	// milliseconds after the check that the series is still arriving.
	o := orthanctest.Start(t, orthanctest.Options{StableAge: 2})
	ctx := context.Background()

	var files []string
	for _, sl := range src.Truth.Slices[:len(src.Truth.Slices)/2] {
		files = append(files, filepath.Join(src.Dir, sl.File))
	}
	ids, err := o.UploadFiles(ctx, files)
	if err != nil || len(ids) != 1 {
		t.Fatalf("upload: %v %v", ids, err)
	}
	id := ids[0]
	var ser struct {
		IsStable  bool
		Instances []string
	}
	if err := o.GetJSON(ctx, "/series/"+id, &ser); err != nil || ser.IsStable {
		t.Fatalf("before the kill: stable %v, %v; want not stable", ser.IsStable, err)
	}

	o.Kill()
	o.Restart()

	if err := o.GetJSON(ctx, "/series/"+id, &ser); err != nil {
		t.Fatal(err)
	}
	if !ser.IsStable {
		t.Errorf("after the restart Orthanc says the series is not stable: Orthanc now keeps stability across a crash")
	}
	if len(ser.Instances) != len(files) {
		t.Errorf("after the restart the series has %d instances, want the %d stored before the kill", len(ser.Instances), len(files))
	}
	// No StableSeries change comes later either: a series modified after the
	// restart gets its own StableSeries change (the positive signal that
	// Orthanc's stability monitor ran for longer than StableAge), and still
	// none names the series that was arriving at the crash.
	marker := modifySeries(t, o, id)
	deadline := time.Now().Add(30 * time.Second)
	for {
		kinds := changesOf(t, o)
		if slices.Contains(kinds[marker], "StableSeries") {
			if got := kinds[id]; len(got) != 1 || got[0] != "NewSeries" {
				t.Errorf("the series' changes are %v, want only NewSeries (no StableSeries after a crash)", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the series made after the restart was not declared stable within 30 s: %v", kinds[marker])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// changesOf reads Orthanc's whole change feed as the change types per resource.
func changesOf(t *testing.T, o *orthanctest.Server) map[string][]string {
	t.Helper()
	var changes struct {
		Changes []struct{ ChangeType, ID string }
		Done    bool
	}
	if err := o.GetJSON(context.Background(), "/changes?since=0&limit=10000", &changes); err != nil || !changes.Done {
		t.Fatalf("changes: %v (done %v)", err, changes.Done)
	}
	out := map[string][]string{}
	for _, c := range changes.Changes {
		out[c.ID] = append(out[c.ID], c.ChangeType)
	}
	return out
}

// modifySeries makes a new series from an existing one (Orthanc's modify).
func modifySeries(t *testing.T, o *orthanctest.Server, id string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, o.URL+"/series/"+id+"/modify", strings.NewReader(`{"Replace":{"SeriesDescription":"marker"}}`))
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
