package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanctest"
)

// The cluster test runs segbridge as the README's "Deploy" section installs
// it on three machines, in loopback form: three nats-server processes (built
// from the module go.mod pins, as `make nats-server` does) as one JetStream
// cluster with deploy/nats/segbridge-nats.conf — TLS with certificates from
// deploy/nats/make-certs.sh, NKeys from `segbridge nkey`, the bridge and
// worker permissions — two `segbridge serve` processes without workers and
// two `segbridge worker` processes, all connecting to all three nodes, and
// one Orthanc whose Lua script posts to the first bridge.

// natsNode is one nats-server process of the test cluster.
type natsNode struct {
	name    string
	bin     string
	env     []string
	client  int
	monitor int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuffer
}

func (n *natsNode) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(n.bin, "-c", filepath.Join(fixture.Root(t), "deploy/nats/segbridge-nats.conf"))
	cmd.Env = n.env
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done, n.logs = cmd, done, logs
	n.mu.Unlock()
}

// kill ends the node with SIGKILL and waits for it.
func (n *natsNode) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (n *natsNode) stop() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// healthy reports whether the node's JetStream is up and current.
func (n *natsNode) healthy() bool {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitor))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// cluster is the whole installation of the test.
type cluster struct {
	nodes    []*natsNode
	orthanc  *orthanctest.Server
	sys      *system // Orthanc helpers
	token    string  // the webhook's
	apiToken string
	bridges  []*clusterBridge
	workers  []*process
	// procs are every segbridge process started, killed ones too, for
	// reading their logs.
	procs     []*process
	workerEnv map[string]string
}

type clusterBridge struct {
	url string
	env map[string]string
	p   *process
}

// envFile reads a deploy/env file: KEY=VALUE lines, # comments.
func envFile(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture.Root(t), "deploy/env", name))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=VALUE", name, line)
		}
		env[k] = v
	}
	return env
}

// inLoopbackForm turns a deploy/env file into the environment of a process
// of this test: the values that name machines, files and secrets become the
// test's (every such key must be known here, so a new one is not missed),
// and every other setting stays as the file says.
func inLoopbackForm(t *testing.T, name string, local map[string]string) map[string]string {
	t.Helper()
	env := envFile(t, name)
	for k := range env {
		if v, ok := local[k]; ok {
			delete(env, k)
			if v != "" {
				env[strings.TrimSuffix(k, "_FILE")] = v // a secret's file becomes its value
			}
			continue
		}
		if strings.HasSuffix(k, "_FILE") || strings.Contains(k, "URL") || strings.Contains(k, "LISTEN") ||
			strings.Contains(k, "_DIR") || strings.Contains(k, "_TLS_") || strings.Contains(k, "NKEY") || strings.Contains(k, "_LIB") {
			t.Fatalf("%s: the test has no loopback value for %s", name, k)
		}
	}
	return env
}

// natsServerBinary builds nats-server from the module go.mod pins, as
// `make nats-server` does; SEGBRIDGE_TEST_NATS_SERVER names another (such
// as Debian's /usr/sbin/nats-server).
func natsServerBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SEGBRIDGE_TEST_NATS_SERVER"); p != "" {
		return p
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = fixture.Root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	return bin
}

// segbridgeNkey runs `segbridge nkey FILE` and returns the public key.
func segbridgeNkey(t *testing.T, file string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "nkey", file)
	cmd.Env = []string{"SEGBRIDGE_TEST_EXEC_MAIN=1", "PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	pub := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(pub, "U") {
		t.Fatalf("segbridge nkey: %v %q", err, out)
	}
	return pub
}

func setupCluster(t *testing.T) *cluster {
	t.Helper()
	root := fixture.Root(t)
	dir := t.TempDir()
	c := &cluster{token: randomToken(), apiToken: randomToken()}

	pki := filepath.Join(dir, "pki")
	if out, err := exec.Command("sh", filepath.Join(root, "deploy/nats/make-certs.sh"), pki,
		"n1=127.0.0.1", "n2=127.0.0.1", "n3=127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("make-certs.sh: %v\n%s", err, out)
	}
	bridgeSeed, workerSeed := filepath.Join(dir, "bridge.nk"), filepath.Join(dir, "worker.nk")
	bridgeKey, workerKey := segbridgeNkey(t, bridgeSeed), segbridgeNkey(t, workerSeed)

	bin := natsServerBinary(t)
	routePorts := []int{orthanctest.FreePort(t), orthanctest.FreePort(t), orthanctest.FreePort(t)}
	var urls []string
	for i := range 3 {
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), bin: bin, client: orthanctest.FreePort(t), monitor: orthanctest.FreePort(t)}
		// The node's /etc/segbridge/nats.env in loopback form, and what
		// segbridge-nats.service adds (the key, the state directory).
		local := map[string]string{
			"NATS_NAME":             n.name,
			"NATS_LISTEN":           fmt.Sprintf("127.0.0.1:%d", n.client),
			"NATS_MONITOR":          fmt.Sprintf("127.0.0.1:%d", n.monitor),
			"NATS_CLUSTER_LISTEN":   fmt.Sprintf("127.0.0.1:%d", routePorts[i]),
			"NATS_ROUTE_1":          fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[0]),
			"NATS_ROUTE_2":          fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[1]),
			"NATS_ROUTE_3":          fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[2]),
			"NATS_TLS_CA":           filepath.Join(pki, "ca.pem"),
			"NATS_TLS_CERT":         filepath.Join(pki, n.name+".pem"),
			"SEGBRIDGE_BRIDGE_NKEY": bridgeKey,
			"SEGBRIDGE_WORKER_NKEY": workerKey,
		}
		file := envFile(t, "cluster/nats.env")
		for k := range file {
			if _, ok := local[k]; !ok {
				t.Fatalf("cluster/nats.env: the test has no loopback value for %s", k)
			}
		}
		for k := range local {
			if _, ok := file[k]; !ok {
				t.Fatalf("cluster/nats.env has no %s", k)
			}
		}
		local["NATS_TLS_KEY"] = filepath.Join(pki, n.name+".key")
		local["NATS_STORE_DIR"] = filepath.Join(dir, n.name)
		for k, v := range local {
			n.env = append(n.env, k+"="+v)
		}
		n.start(t)
		c.nodes = append(c.nodes, n)
		urls = append(urls, fmt.Sprintf("tls://127.0.0.1:%d", n.client))
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.stop()
			if t.Failed() {
				t.Logf("%s log:\n%s", n.name, tail(n.logs.String(), 3000))
			}
		}
	})
	waitFor(t, 60*time.Second, "a healthy three-node JetStream cluster", func() bool {
		for _, n := range c.nodes {
			if !n.healthy() {
				return false
			}
		}
		return true
	})

	bridgePorts := []int{orthanctest.FreePort(t), orthanctest.FreePort(t)}
	c.orthanc = orthanctest.Start(t, orthanctest.Options{
		StableAge:  1,
		LuaScripts: []string{filepath.Join(root, "orthanc-lua/segbridge.lua")},
		Extra: map[string]any{"Segbridge": map[string]any{
			"Url": fmt.Sprintf("http://127.0.0.1:%d", bridgePorts[0]), "Token": c.token, "Modalities": []string{"MR"},
		}},
	})
	c.sys = &system{orthanc: c.orthanc}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("orthanc log:\n%s", tail(c.orthanc.Log(), 3000))
		}
	})

	// The bridges and workers run with deploy/env/cluster's files in
	// loopback form, and with shorter leases, retries and reconciler passes
	// than a real installation needs, so that faults show in seconds.
	fast := map[string]string{
		"SEGBRIDGE_ACK_WAIT":     "3s",
		"SEGBRIDGE_RETRY_DELAY":  "1s",
		"SEGBRIDGE_MAX_ATTEMPTS": "10",
		"SEGBRIDGE_LOG_FORMAT":   "json",
		"SEGBRIDGE_LOG_LEVEL":    "info",
		"SEGBRIDGE_ORT_THREADS":  "1",
	}
	local := map[string]string{
		"ORTHANC_URL":                  c.orthanc.URL,
		"ORTHANC_USER":                 c.orthanc.User,
		"ORTHANC_PASSWORD_FILE":        c.orthanc.Password,
		"SEGBRIDGE_MODELS_DIR":         "",
		"SEGBRIDGE_ORT_LIB":            fixture.ORTLibrary(t),
		"SEGBRIDGE_NATS_URL":           strings.Join(urls, ","),
		"SEGBRIDGE_NATS_TLS_CA":        filepath.Join(pki, "ca.pem"),
		"SEGBRIDGE_NATS_NKEY_SEED":     bridgeSeed,
		"SEGBRIDGE_WEBHOOK_TOKEN_FILE": c.token,
		"SEGBRIDGE_API_TOKEN_FILE":     c.apiToken,
	}
	model := filepath.Join(root, "testdata/models/head-threshold.yaml")
	for i, port := range bridgePorts {
		local["SEGBRIDGE_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", port)
		env := inLoopbackForm(t, "cluster/segbridge.env", local)
		for k, v := range fast {
			env[k] = v
		}
		env["MODEL_PATH"] = model
		env["SEGBRIDGE_RECONCILE_INTERVAL"] = "1s"
		b := &clusterBridge{url: fmt.Sprintf("http://127.0.0.1:%d", port), env: env}
		c.bridges = append(c.bridges, b)
		c.startBridge(t, i)
	}
	local["SEGBRIDGE_NATS_NKEY_SEED"] = workerSeed
	c.workerEnv = inLoopbackForm(t, "cluster/segbridge-worker.env", local)
	for k, v := range fast {
		c.workerEnv[k] = v
	}
	c.workerEnv["MODEL_PATH"] = model
	for range 2 {
		c.workers = append(c.workers, c.startWorker(t))
	}
	return c
}

// startBridge starts bridge i and waits until it answers.
func (c *cluster) startBridge(t *testing.T, i int) {
	t.Helper()
	b := c.bridges[i]
	b.p = startProcess(t, b.env, "serve")
	c.procs = append(c.procs, b.p)
	waitFor(t, 60*time.Second, fmt.Sprintf("bridge %d answering", i+1), func() bool {
		select {
		case err := <-b.p.done:
			t.Fatalf("bridge %d exited: %v\n%s", i+1, err, tail(b.p.logs.String(), 3000))
		default:
		}
		resp, err := http.Get(b.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (c *cluster) startWorker(t *testing.T) *process {
	t.Helper()
	p := startProcess(t, c.workerEnv, "worker")
	c.procs = append(c.procs, p)
	return p
}

// kill ends a segbridge process with SIGKILL.
func kill(t *testing.T, p *process) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

var clusterHTTP = &http.Client{Timeout: 15 * time.Second}

// call sends an API request to bridge i; when it is down or answers 5xx
// (a NATS node failing over), it tries the other bridge, as a load balancer
// in front of both would, for up to a minute.
func (c *cluster) call(t *testing.T, i int, method, path string, body []byte, out any) (code int, via int) {
	t.Helper()
	code, via, err := c.try(i, method, path, body, out)
	if err != nil {
		t.Fatal(err)
	}
	return code, via
}

// try is call without a test: it returns what went wrong. It may run on any
// goroutine.
func (c *cluster) try(i int, method, path string, body []byte, out any) (code int, via int, err error) {
	deadline := time.Now().Add(60 * time.Second)
	for n := 0; ; n++ {
		via = (i + n) % len(c.bridges)
		req, _ := http.NewRequest(method, c.bridges[via].url+path, bytes.NewReader(body))
		tok := c.apiToken
		if strings.HasPrefix(path, "/v1/events/") {
			tok = c.token
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := clusterHTTP.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 500 {
				if out != nil {
					if err := json.Unmarshal(b, out); err != nil {
						return resp.StatusCode, via, fmt.Errorf("%s %s: answer %d is not JSON: %q", method, path, resp.StatusCode, b)
					}
				}
				return resp.StatusCode, via, nil
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		if time.Now().After(deadline) {
			return 0, via, fmt.Errorf("%s %s: no bridge answered within a minute: %v", method, path, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clusterJob is a job as the cluster test reads it.
type clusterJob struct {
	jobView
	Worker string `json:"worker"`
}

// jobs lists every job through bridge i (or the other).
func (c *cluster) jobs(t *testing.T, i int) []clusterJob {
	t.Helper()
	var out struct{ Jobs []clusterJob }
	if code, _ := c.call(t, i, http.MethodGet, "/v1/jobs?limit=10000", nil, &out); code != http.StatusOK {
		t.Fatalf("GET /v1/jobs: %d", code)
	}
	return out.Jobs
}

// done counts done jobs of the given series.
func (c *cluster) done(t *testing.T, series map[string]bool) (done int, other map[string]int) {
	t.Helper()
	other = map[string]int{}
	for _, j := range c.jobs(t, 1) {
		if !series[j.SeriesID] {
			continue
		}
		if j.State == "done" {
			done++
		} else {
			other[j.State]++
		}
	}
	return done, other
}

// scrape reads bridge i's /metrics into "name{labels}" → value.
func (c *cluster) scrape(t *testing.T, i int) map[string]float64 {
	t.Helper()
	resp, err := http.Get(c.bridges[i].url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err == nil {
			out[k] = f
		}
	}
	return out
}

// sumMetric adds up one sample over both bridges, as sum() in Prometheus.
func (c *cluster) sumMetric(t *testing.T, key string) float64 {
	t.Helper()
	var s float64
	for i := range c.bridges {
		s += c.scrape(t, i)[key]
	}
	return s
}

// streamLeader is the node that leads the job stream.
func (c *cluster) streamLeader(t *testing.T) *natsNode {
	t.Helper()
	var n *natsNode
	waitFor(t, time.Minute, "a node leading the job stream", func() bool {
		n = c.currentStreamLeader()
		return n != nil
	})
	return n
}

// currentStreamLeader is the node that leads the job stream now, as the
// nodes' monitoring says; nil during an election.
func (c *cluster) currentStreamLeader() *natsNode {
	var jsz struct {
		AccountDetails []struct {
			Name         string `json:"name"`
			StreamDetail []struct {
				Name    string `json:"name"`
				Cluster struct {
					Leader string `json:"leader"`
				} `json:"cluster"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	for _, n := range c.nodes {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?accounts=true&streams=true", n.monitor))
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, a := range jsz.AccountDetails {
			for _, s := range a.StreamDetail {
				if s.Name != "SEGBRIDGE_JOBS" {
					continue
				}
				for _, m := range c.nodes {
					if m.name == s.Cluster.Leader {
						return m
					}
				}
			}
		}
	}
	return nil
}

// streamLastSeq is how many job messages were ever published.
func (c *cluster) streamLastSeq(t *testing.T) uint64 {
	t.Helper()
	var jsz struct {
		AccountDetails []struct {
			StreamDetail []struct {
				Name  string `json:"name"`
				State struct {
					Msgs    uint64 `json:"messages"`
					LastSeq uint64 `json:"last_seq"`
				} `json:"state"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	leader := c.streamLeader(t)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?accounts=true&streams=true", leader.monitor))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		t.Fatal(err)
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.StreamDetail {
			if s.Name == "SEGBRIDGE_JOBS" {
				if s.State.Msgs != 0 {
					t.Errorf("the job stream still holds %d messages", s.State.Msgs)
				}
				return s.State.LastSeq
			}
		}
	}
	t.Fatal("no job stream in /jsz")
	return 0
}

// admissions counts, over the logs of every bridge process that ran (killed
// ones too), the jobs each trigger created: "series admitted" with new=true.
func (c *cluster) admissions(t *testing.T) (perJob map[string]int, perTrigger map[string]int) {
	t.Helper()
	perJob, perTrigger = map[string]int{}, map[string]int{}
	for _, p := range c.procs {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			if !strings.Contains(line, `"series admitted"`) {
				continue
			}
			var e struct {
				Job     string `json:"job"`
				Trigger string `json:"trigger"`
				New     bool   `json:"new"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.New {
				perJob[e.Job]++
				perTrigger[e.Trigger]++
			}
		}
	}
	return perJob, perTrigger
}

// copySeriesE is copySeries for any goroutine.
func copySeriesE(o *orthanctest.Server, id string, n int) (string, error) {
	body := fmt.Sprintf(`{"Replace":{"SeriesDescription":"copy %d"}}`, n)
	req, _ := http.NewRequest(http.MethodPost, o.URL+"/series/"+id+"/modify", strings.NewReader(body))
	req.SetBasicAuth(o.User, o.Password)
	resp, err := clusterHTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.ID == "" {
		return "", fmt.Errorf("modify series %s: %d %v", id, resp.StatusCode, err)
	}
	return out.ID, nil
}

// round makes n new series (copies of base: Orthanc posts each to the first
// bridge when it is stable) and triggers them through both bridges as well:
// every third also by hand through the second bridge, every sixth a second
// time through the first, every fifth by a webhook posted to the second.
// during runs meanwhile on the test's goroutine, told how many series were
// made so far; with hold > 0, the series from the hold-th on are made only
// once during calls release, so that there is work left for what it does
// then. round returns the series and the drain time: from the first copy to
// the last job done.
func (c *cluster) round(t *testing.T, base string, first, n, hold int, during func(made func() int, release func())) (map[string]bool, time.Duration) {
	t.Helper()
	start := time.Now()
	var mu sync.Mutex
	series := map[string]bool{}
	made := func() int { mu.Lock(); defer mu.Unlock(); return len(series) }
	errs := make(chan error, 1)
	gate := make(chan struct{})
	var heldFor atomic.Int64
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(gate) }) }
	if hold <= 0 {
		release()
	}
	go func() {
		errs <- func() error {
			for k := range n {
				if k == hold {
					held := time.Now()
					<-gate
					heldFor.Store(int64(time.Since(held)))
				}
				id, err := copySeriesE(c.orthanc, base, first+k)
				if err != nil {
					return err
				}
				mu.Lock()
				series[id] = true
				mu.Unlock()
				var v jobView
				ok := func(code int, _ int, err error) error {
					if err == nil && code != http.StatusAccepted && code != http.StatusOK {
						err = fmt.Errorf("series %s: answered %d", id, code)
					}
					return err
				}
				if k%3 == 0 {
					if err := ok(c.try(1, http.MethodPost, "/v1/series/"+id+"/segment", nil, &v)); err != nil {
						return fmt.Errorf("manual trigger: %w", err)
					}
				}
				if k%6 == 0 {
					if err := ok(c.try(0, http.MethodPost, "/v1/series/"+id+"/segment", nil, &v)); err != nil {
						return fmt.Errorf("second manual trigger: %w", err)
					}
				}
				if k%5 == 0 {
					ev := []byte(`{"event":"StableSeries","series_id":"` + id + `","tags":{"Modality":"MR"}}`)
					if err := ok(c.try(1, http.MethodPost, "/v1/events/orthanc", ev, nil)); err != nil {
						return fmt.Errorf("webhook posted to the second bridge: %w", err)
					}
				}
			}
			return nil
		}()
	}()
	if during != nil {
		during(made, release)
	}
	release()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for id := range series {
		ids[id] = true
	}
	if d := time.Duration(heldFor.Load()); hold > 0 {
		t.Logf("series %d to %d were held back %s (part of the drain time)", hold+1, n, d.Round(100*time.Millisecond))
	}
	waitFor(t, 5*time.Minute, fmt.Sprintf("%d jobs done", n), func() bool {
		d, other := c.done(t, ids)
		if other["failed"] > 0 {
			t.Fatalf("%d jobs failed", other["failed"])
		}
		return d == n
	})
	return ids, time.Since(start)
}

// TestCluster_KilledInParts runs 200 series through the cluster: 100 with
// nothing failing, then 100 while a NATS node (the job stream's leader), the
// bridge Orthanc posts to, and a worker in the middle of a job are each
// killed with SIGKILL and brought back. Every job ends done with exactly one
// SEG, nothing stays queued, nothing is queued twice, and the two bridges
// answer and count as one service.
func TestCluster_KilledInParts(t *testing.T) {
	c := setupCluster(t)
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "8", "--patient-id", "CLUSTER", "--seed", "12")
	base := c.sys.upload(t, src.Dir)
	const n = 100

	// Round 1: the base series and 99 copies, nothing failing.
	first, drain1 := c.round(t, base, 1, n-1, 0, nil)
	first[base] = true
	waitFor(t, time.Minute, "the base series done", func() bool { d, _ := c.done(t, first); return d == n })
	t.Logf("round 1: %d series drained in %s with nothing failing", n, drain1.Round(100*time.Millisecond))

	t.Run("two bridges answer as one", func(t *testing.T) {
		for _, path := range []string{"/v1/series/" + base, "/v1/jobs?limit=50", "/v1/jobs?state=done&limit=20", "/api/mri/segmentation/requests/?limit=30"} {
			var a, b json.RawMessage
			c.call(t, 0, http.MethodGet, path, nil, &a)
			c.call(t, 1, http.MethodGet, path, nil, &b)
			if !bytes.Equal(a, b) {
				t.Errorf("GET %s differs between the bridges:\n%s\n%s", path, tail(string(a), 400), tail(string(b), 400))
			}
		}
	})
	t.Run("one reconciler, and metrics that add up", func(t *testing.T) {
		m := []map[string]float64{c.scrape(t, 0), c.scrape(t, 1)}
		leader := 0
		if m[1]["segbridge_leader"] == 1 {
			leader = 1
		}
		if m[0]["segbridge_leader"]+m[1]["segbridge_leader"] != 1 {
			t.Fatalf("segbridge_leader %v and %v: want exactly one leader", m[0]["segbridge_leader"], m[1]["segbridge_leader"])
		}
		follower := 1 - leader
		if p := m[follower][`segbridge_reconciler_passes_total{result="ok"}`]; p != 0 {
			t.Errorf("the following bridge ran %v reconciler passes", p)
		}
		if p := m[leader][`segbridge_reconciler_passes_total{result="ok"}`]; p == 0 {
			t.Errorf("the leading bridge ran no reconciler pass")
		}
		for key, want := range map[string]float64{
			`segbridge_jobs{state="done"}`:                              n,
			`segbridge_jobs_ended_total{state="done"}`:                  n,
			`segbridge_stage_duration_seconds_count{stage="inference"}`: n,
			"segbridge_queue_depth":                                     0,
		} {
			if got := m[0][key] + m[1][key]; got != want {
				t.Errorf("sum over both bridges of %s = %v, want %v", key, got, want)
			}
		}
		var queued float64
		for _, mm := range m {
			for k, v := range mm {
				if strings.HasPrefix(k, "segbridge_jobs_queued_total{") {
					queued += v
				}
			}
		}
		if queued != n {
			t.Errorf("sum over both bridges of segbridge_jobs_queued_total = %v, want %d (one per job)", queued, n)
		}
		t.Logf("bridge %d leads; jobs ended: %v by bridge 1, %v by bridge 2", leader+1,
			m[0][`segbridge_jobs_ended_total{state="done"}`], m[1][`segbridge_jobs_ended_total{state="done"}`])
	})

	// Round 2: 100 new copies while parts die.
	var faults []string
	var victimJob string // the job the killed worker was running
	logf := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		faults = append(faults, msg)
		t.Log(msg)
	}
	// The last 30 series are made only after the bridge came back, so that
	// the worker is killed while there is work.
	second, drain2 := c.round(t, base, n, n, n-30, func(made func() int, release func()) {
		doneOf := func() int {
			var d int
			for _, j := range c.jobs(t, 1) {
				if j.State == "done" && !first[j.SeriesID] {
					d++
				}
			}
			return d
		}
		waitFor(t, 2*time.Minute, "10 jobs of round 2 done", func() bool { return doneOf() >= 10 })
		node := c.streamLeader(t)
		m, d := made(), doneOf()
		node.kill()
		down := time.Now()
		logf("SIGKILL NATS node %s (the job stream's leader) with %d series made, %d done", node.name, m, d)
		waitFor(t, time.Minute, "the job stream led by another node", func() bool {
			l := c.currentStreamLeader()
			return l != nil && l != node
		})
		logf("  the job stream has a new leader after %s", time.Since(down).Round(100*time.Millisecond))
		time.Sleep(2 * time.Second)
		node.start(t)
		waitFor(t, time.Minute, node.name+" healthy again", node.healthy)
		logf("  %s back and current after %s", node.name, time.Since(down).Round(100*time.Millisecond))

		waitFor(t, 2*time.Minute, "30 jobs of round 2 done", func() bool { return doneOf() >= 30 })
		m, d = made(), doneOf()
		kill(t, c.bridges[0].p)
		down = time.Now()
		logf("SIGKILL bridge 1 (Orthanc's webhooks go to it) with %d series made, %d done", m, d)
		time.Sleep(3 * time.Second)
		c.startBridge(t, 0)
		logf("  bridge 1 back after %s", time.Since(down).Round(100*time.Millisecond))
		waitFor(t, time.Minute, "a leading bridge", func() bool {
			return c.scrape(t, 0)["segbridge_leader"]+c.scrape(t, 1)["segbridge_leader"] == 1
		})
		lead := 1
		if c.scrape(t, 1)["segbridge_leader"] == 1 {
			lead = 2
		}
		logf("  bridge %d leads (reconciles) %s after the kill", lead, time.Since(down).Round(100*time.Millisecond))

		release()
		waitFor(t, 2*time.Minute, "60 jobs of round 2 done", func() bool { return doneOf() >= 60 })
		// A worker in the middle of a job: its name in the job's status
		// holds its process id. A job takes a tenth of a second here, so the
		// kill may land just after the job ended; then it is tried again
		// with the next running job.
		for try := 1; ; try++ {
			var victim int
			var job clusterJob
			waitFor(t, time.Minute, "a worker running a job", func() bool {
				var running struct{ Jobs []clusterJob }
				c.call(t, 1, http.MethodGet, "/v1/jobs?state=running&limit=20", nil, &running)
				for _, j := range running.Jobs {
					for w, p := range c.workers {
						if strings.HasSuffix(j.Worker, fmt.Sprintf("-%d", p.cmd.Process.Pid)) {
							victim, job = w, j
							return true
						}
					}
				}
				return false
			})
			m, d = made(), doneOf()
			kill(t, c.workers[victim])
			down = time.Now()
			var after clusterJob
			c.call(t, 1, http.MethodGet, "/v1/jobs/"+job.ID, nil, &after)
			c.workers[victim] = c.startWorker(t)
			if after.State == "running" && after.Worker == job.Worker {
				victimJob = job.ID
				logf("SIGKILL worker %d in the middle of job %s with %d series made, %d done; a new worker %d started at once",
					victim+1, job.ID, m, d, victim+1)
				break
			}
			logf("  (SIGKILL worker %d just after it ended job %s; started again)", victim+1, job.ID)
			if try == 5 {
				t.Fatal("five kills of a worker never landed in the middle of a job")
			}
		}
	})
	t.Logf("round 2: %d series drained in %s with the faults above (round 1: %s)", n, drain2.Round(100*time.Millisecond), drain1.Round(100*time.Millisecond))

	all := map[string]bool{}
	for id := range first {
		all[id] = true
	}
	for id := range second {
		all[id] = true
	}
	t.Run("every job done once, with one SEG per series, nothing stuck", func(t *testing.T) {
		jobs := c.jobs(t, 0)
		segOf := map[string]string{}
		for _, j := range jobs {
			if !all[j.SeriesID] {
				t.Errorf("job %s of a series the test did not make", j.ID)
				continue
			}
			if j.State != "done" || j.Generation != 1 {
				t.Errorf("job %s: %s, generation %d", j.ID, j.State, j.Generation)
			}
			segOf[j.SeriesID] = j.SEGSeriesID
		}
		if len(jobs) != 2*n || len(segOf) != 2*n {
			t.Fatalf("%d jobs for %d series, want %d", len(jobs), len(segOf), 2*n)
		}
		waitStable(t, c.orthanc, base)
		segs := c.sys.segSeriesOf(t, base) // all copies share the base's study
		if len(segs) != 2*n {
			t.Errorf("the study holds %d SEG series for %d source series, want one each", len(segs), 2*n)
		}
		distinct := map[string]bool{}
		for _, s := range segOf {
			distinct[s] = true
		}
		if len(distinct) != 2*n {
			t.Errorf("%d series name %d distinct SEGs", 2*n, len(distinct))
		}
		if seq := c.streamLastSeq(t); seq != 2*n {
			t.Errorf("%d job messages were published for %d jobs", seq, 2*n)
		}
		if d := c.sumMetric(t, "segbridge_queue_depth"); d != 0 {
			t.Errorf("queue depth %v", d)
		}
	})
	t.Run("the killed worker's job ran again elsewhere", func(t *testing.T) {
		var j clusterJob
		c.call(t, 0, http.MethodGet, "/v1/jobs/"+victimJob, nil, &j)
		if j.State != "done" || j.Attempts < 2 || j.Generation != 1 {
			t.Errorf("job %s: %s after %d attempts, generation %d; want done on a redelivery", victimJob, j.State, j.Attempts, j.Generation)
		}
	})
	t.Run("the reconcilers queued nothing twice", func(t *testing.T) {
		// Each job was created by one trigger at most (its message id and
		// the compare-and-set on its status see to that), and the job stream
		// got one message per job (checked above). A job can also have been
		// created with no trigger saying so: a bridge whose status write
		// failed after its publish (a NATS node failing over) or that was
		// killed in between; the worker that takes the message then writes
		// the status.
		perJob, perTrigger := c.admissions(t)
		for id, k := range perJob {
			if k != 1 {
				t.Errorf("job %s was queued %d times", id, k)
			}
		}
		var unlogged []string
		for _, j := range c.jobs(t, 0) {
			if perJob[j.ID] == 0 {
				unlogged = append(unlogged, fmt.Sprintf("%s (trigger %q, attempts %d)", j.ID, j.Trigger, j.Attempts))
				for _, p := range c.procs {
					for _, line := range strings.Split(p.logs.String(), "\n") {
						if strings.Contains(line, j.SeriesID) && (strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) || strings.Contains(line, "admitted")) {
							t.Logf("  %s", tail(line, 400))
						}
					}
				}
			}
		}
		t.Logf("jobs queued by trigger: %v; created by a trigger that did not see it written: %v", perTrigger, unlogged)
		if len(unlogged) > 5 {
			t.Errorf("%d jobs were created by no trigger that said so", len(unlogged))
		}
	})
	t.Run("a SEG made under faults is valid and the same as without", func(t *testing.T) {
		// Each SEG passes dciodvfy and references its own series; the one
		// made while parts died holds the same mask as the base series'
		// (same pixels, same model). (At 8 mm the head's Dice against the
		// truth is no test of the model; the other e2e tests check it.)
		var ids []string
		for id := range second {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		var masks [][]byte
		for _, id := range []string{base, ids[0]} {
			var j jobView
			c.call(t, 0, http.MethodGet, "/v1/jobs/"+jobIDOf(id), nil, &j)
			path := c.sys.segFile(t, j.SEGSeriesID)
			if errs, _ := fixture.Dciodvfy(t, path); len(errs) > 0 {
				t.Errorf("SEG of %s: dciodvfy errors:\n%s", id, strings.Join(errs, "\n"))
			}
			seg := fixture.ReadSEG(t, path)
			var ser struct{ MainDicomTags map[string]string }
			if err := c.orthanc.GetJSON(context.Background(), "/series/"+id, &ser); err != nil {
				t.Fatal(err)
			}
			if seg.ReferencedSeries.UID != ser.MainDicomTags["SeriesInstanceUID"] || len(seg.ReferencedSeries.Instances) != src.Truth.Depth {
				t.Errorf("the SEG of %s references %s with %d instances, want %s with %d", id, seg.ReferencedSeries.UID,
					len(seg.ReferencedSeries.Instances), ser.MainDicomTags["SeriesInstanceUID"], src.Truth.Depth)
			}
			masks = append(masks, seg.Pixels)
		}
		if len(masks[0]) == 0 || !bytes.Equal(masks[0], masks[1]) {
			t.Errorf("the mask made under faults differs from the base series' (%d and %d bytes)", len(masks[0]), len(masks[1]))
		}
	})
	for _, f := range faults {
		t.Log(f)
	}
}

// jobIDOf is the id of the reference model's job for a series.
func jobIDOf(seriesID string) string { return seriesID + ".head-threshold.1_0_0" }
