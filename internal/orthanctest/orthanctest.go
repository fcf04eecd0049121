// Package orthanctest starts a real Orthanc server (Debian's package) for tests:
// on a free loopback port, with a temporary storage folder, HTTP basic
// authentication with generated credentials, and optional Lua scripts.
package orthanctest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options shape the Orthanc instance.
type Options struct {
	// LuaScripts are loaded by Orthanc (its LuaScripts setting).
	LuaScripts []string
	// StableAge is Orthanc's StableAge in seconds. Default 1, so stable-series
	// events come quickly.
	StableAge int
	// Extra is merged into the configuration, e.g. a "Segbridge" section.
	Extra map[string]any
	// Env adds environment variables for the Orthanc process.
	Env []string
}

// Server is a running Orthanc.
type Server struct {
	URL      string
	User     string
	Password string
	Port     int
	Dir      string
	LogPath  string

	t      testing.TB
	cfg    string
	env    []string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts Orthanc and stops it when the test ends. It fails the test
// with an install hint when the Orthanc binary is missing.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("Orthanc")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/Orthanc"); serr == nil {
			bin = "/usr/sbin/Orthanc"
		} else {
			t.Fatalf("Orthanc not found: run make deps (it installs Debian's orthanc package)")
		}
	}
	if opt.LuaScripts == nil {
		opt.LuaScripts = []string{}
	}
	if opt.StableAge == 0 {
		opt.StableAge = 1
	}
	dir := t.TempDir()
	s := &Server{
		User:     "test-" + randomHex(4),
		Password: randomHex(16),
		Port:     FreePort(t),
		Dir:      dir,
		LogPath:  filepath.Join(dir, "orthanc.log"),
		t:        t,
		env:      opt.Env,
	}
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", s.Port)
	cfg := map[string]any{
		"Name":                  "segbridge-test",
		"StorageDirectory":      filepath.Join(dir, "db"),
		"IndexDirectory":        filepath.Join(dir, "db"),
		"HttpPort":              s.Port,
		"DicomServerEnabled":    false,
		"RemoteAccessAllowed":   false,
		"AuthenticationEnabled": true,
		"RegisteredUsers":       map[string]string{s.User: s.Password},
		"StableAge":             opt.StableAge,
		"LuaScripts":            opt.LuaScripts,
		"Plugins":               []string{},
		"HttpTimeout":           10,
		"UserMetadata":          map[string]int{"segbridge": 4242},
	}
	for k, v := range opt.Extra {
		cfg[k] = v
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	s.cfg = filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(s.cfg, b, 0o600); err != nil {
		t.Fatalf("write orthanc config: %v", err)
	}
	s.start(bin)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(bin string) {
	s.t.Helper()
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("orthanc log: %v", err)
	}
	cmd := exec.Command(bin, s.cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), s.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start Orthanc: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			log, _ := os.ReadFile(s.LogPath)
			s.t.Fatalf("Orthanc exited at start:\n%s", tail(string(log), 3000))
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/system", nil)
		req.SetBasicAuth(s.User, s.Password)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("Orthanc did not answer on %s within 30 s", s.URL)
}

// Stop stops Orthanc; it is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Kill ends Orthanc with SIGKILL, as a crash or the OOM killer would: it gets
// no chance to finish anything it holds in memory (such as the series it has
// not yet declared stable). It waits until the process is gone; Restart
// starts it again on the same storage. Safe to call when it is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts a stopped Orthanc again on the same port and storage.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	bin, _ := exec.LookPath("Orthanc")
	if bin == "" {
		bin = "/usr/sbin/Orthanc"
	}
	s.start(bin)
}

// Log returns what Orthanc has logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// Upload stores every file in dir and returns the Orthanc series ids seen.
func (s *Server) Upload(ctx context.Context, dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".dcm") {
			continue
		}
		files = append(files, filepath.Join(dir, e.Name()))
	}
	return s.UploadFiles(ctx, files)
}

// UploadFiles stores the given DICOM files in this order and returns the
// Orthanc series ids seen.
func (s *Server) UploadFiles(ctx context.Context, files []string) ([]string, error) {
	seen := map[string]bool{}
	var series []string
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/instances", bytes.NewReader(data))
		req.SetBasicAuth(s.User, s.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", filepath.Base(path), err)
		}
		var out struct{ ParentSeries string }
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("upload %s: status %d: %v", filepath.Base(path), resp.StatusCode, err)
		}
		if !seen[out.ParentSeries] {
			seen[out.ParentSeries] = true
			series = append(series, out.ParentSeries)
		}
	}
	return series, nil
}

// GetJSON reads a REST path into v.
func (s *Server) GetJSON(ctx context.Context, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	req.SetBasicAuth(s.User, s.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Get reads a REST path's raw body.
func (s *Server) Get(ctx context.Context, path string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	req.SetBasicAuth(s.User, s.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return b, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
