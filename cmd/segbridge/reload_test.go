package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanctest"
)

// TestReload_SIGHUPDeploysANewModelVersion runs `segbridge serve` (bridge
// only, its NATS open to workers) and `segbridge worker` as OS processes
// with a folder of manifests, queues jobs for head-threshold 1.0.0, and
// while the first runs, installs 1.1.0 and sends SIGHUP to the worker and
// then to the bridge, as systemctl reload does (workers first). Every job
// queued before ends done with 1.0.0, new triggers run 1.1.0, and a
// manifest that does not load leaves the models as they were.
func TestReload_SIGHUPDeploysANewModelVersion(t *testing.T) {
	root := fixture.Root(t)
	// No Lua script and no reconciler: only the test's triggers queue jobs.
	o := orthanctest.Start(t, orthanctest.Options{})
	sys := &system{orthanc: o}
	models := t.TempDir()
	manifest, err := os.ReadFile(filepath.Join(root, "testdata/models/head-threshold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	install := func(version string) {
		t.Helper()
		b := strings.Replace(string(manifest), "version: 1.0.0", "version: "+version, 1)
		if !strings.Contains(b, "version: "+version) {
			t.Fatal("the manifest has no version line to change")
		}
		// Written beside and renamed, as a deploy should: a reload never
		// reads half a file.
		tmp := filepath.Join(models, ".head-threshold.yaml.new")
		if err := os.WriteFile(tmp, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(models, "head-threshold.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	install("1.0.0")

	port, natsAddr, natsToken := orthanctest.FreePort(t), fmt.Sprintf("127.0.0.1:%d", orthanctest.FreePort(t)), randomToken()
	common := map[string]string{
		"ORTHANC_URL": o.URL, "ORTHANC_USER": o.User, "ORTHANC_PASSWORD": o.Password,
		"SEGBRIDGE_MODELS_DIR": models, "SEGBRIDGE_MODEL_FILES": filepath.Join(root, "testdata/models"),
		"SEGBRIDGE_ORT_LIB": fixture.ORTLibrary(t), "SEGBRIDGE_ORT_THREADS": "1",
		"SEGBRIDGE_NATS_TOKEN": natsToken, "SEGBRIDGE_LOG_FORMAT": "json",
	}
	with := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range common {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	serve := startProcess(t, with(map[string]string{
		"SEGBRIDGE_LISTEN": fmt.Sprintf("127.0.0.1:%d", port), "SEGBRIDGE_WEBHOOK_TOKEN": randomToken(),
		"SEGBRIDGE_DATA_DIR": t.TempDir(), "SEGBRIDGE_WORKERS": "0", "SEGBRIDGE_NATS_LISTEN": natsAddr,
		"SEGBRIDGE_RECONCILE_INTERVAL": "off",
	}), "serve")
	s := &system{orthanc: o, bridge: fmt.Sprintf("http://127.0.0.1:%d", port)}
	waitFor(t, 30*time.Second, "the bridge answering", func() bool {
		resp, err := http.Get(s.bridge + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	worker := startProcess(t, with(map[string]string{"SEGBRIDGE_NATS_URL": "nats://" + natsAddr}), "worker")

	// ch2 at 2 mm: a few hundred milliseconds a job.
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "RELOAD", "--seed", "21")
	base := sys.upload(t, src.Dir)
	ids := []string{base}
	for k := 1; k < 12; k++ {
		ids = append(ids, copySeries(t, o, base, k))
	}
	trigger := func(id string) jobView {
		t.Helper()
		var v jobView
		if code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment", "", nil, &v); code != http.StatusAccepted && code != http.StatusOK {
			t.Fatalf("trigger %s: %d %+v", id, code, v)
		}
		return v
	}
	var old []string
	for _, id := range ids {
		old = append(old, trigger(id).ID)
	}
	waitFor(t, 60*time.Second, "the first job running", func() bool {
		j := s.job(t, old[0])
		return j.State == "running" || j.State == "done"
	})

	// Deploy 1.1.0: the manifest, then SIGHUP to the worker, then to the
	// bridge.
	install("1.1.0")
	for _, p := range []*process{worker, serve} {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the manifests re-read", func() bool {
			return strings.Contains(p.logs.String(), "SIGHUP: model manifests re-read")
		})
	}
	waiting := 0
	for _, id := range old {
		if st := s.job(t, id).State; st == "queued" || st == "running" {
			waiting++
		}
	}
	t.Logf("at the reload %d of %d jobs of 1.0.0 were queued or running", waiting, len(old))
	if waiting < 2 {
		t.Fatalf("only %d jobs were waiting at the reload: the test did not test it", waiting)
	}

	t.Run("jobs queued before the reload end done with their version", func(t *testing.T) {
		for _, id := range old {
			waitFor(t, 90*time.Second, "job "+id+" done", func() bool {
				j := s.job(t, id)
				if j.State == "failed" || j.State == "cancelled" {
					t.Fatalf("job %s: %s %s", id, j.State, j.Error)
				}
				return j.State == "done"
			})
			if !strings.HasSuffix(id, ".1_0_0") {
				t.Errorf("job %s is not of 1.0.0", id)
			}
		}
	})
	t.Run("a new trigger runs the new version", func(t *testing.T) {
		v := trigger(ids[0])
		if !strings.HasSuffix(v.ID, ".1_1_0") {
			t.Fatalf("trigger after the reload queued %s, want version 1.1.0", v.ID)
		}
		waitFor(t, 60*time.Second, "the 1.1.0 job done", func() bool {
			j := s.job(t, v.ID)
			if j.State == "failed" {
				t.Fatalf("job %s failed: %s", v.ID, j.Error)
			}
			return j.State == "done"
		})
		// The copies share the base's study.
		if segs := sys.segSeriesOf(t, ids[0]); len(segs) != len(old)+1 {
			t.Errorf("the study has %d SEG series, want %d: one per series by 1.0.0 and one by 1.1.0", len(segs), len(old)+1)
		}
	})
	t.Run("a manifest that does not load changes nothing", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(models, "head-threshold.yaml"), []byte("name: head-threshold\nversion: [\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(serve.logs.String(), "cannot re-read the model manifests")
		if err := serve.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the failed reload logged", func() bool {
			return strings.Count(serve.logs.String(), "cannot re-read the model manifests") > before
		})
		v := trigger(ids[1])
		if !strings.HasSuffix(v.ID, ".1_1_0") {
			t.Fatalf("after a failed reload a trigger queued %s, want 1.1.0 still", v.ID)
		}
	})
	for _, p := range []*process{serve, worker} {
		select {
		case err := <-p.done:
			t.Fatalf("a process ended after SIGHUP: %v", err)
		default:
		}
	}
}
