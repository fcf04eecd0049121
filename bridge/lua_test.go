package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/intake"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanctest"
	"github.com/segbridge/segbridge/internal/queue"
)

// TestLuaScript_ReportsFailedPosts runs the project's Lua script in a real
// Orthanc whose Segbridge.Url is a port this test controls: with nothing
// listening there, and with a bridge that expects another token (401),
// Orthanc's log shows the script's message naming the series, and never
// the token; with the right token the series is queued and no message is
// printed.
func TestLuaScript_ReportsFailedPosts(t *testing.T) {
	port := orthanctest.FreePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	luaToken := "lua-token-" + strings.Repeat("7", 30)
	o := orthanctest.Start(t, orthanctest.Options{
		StableAge:  1,
		LuaScripts: []string{filepath.Join(fixture.Root(t), "orthanc-lua/segbridge.lua")},
		Extra: map[string]any{"Segbridge": map[string]any{
			"Url": "http://" + listen + "/", "Token": luaToken, "Modalities": []string{"MR"},
		}},
	})
	src := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "12", "--patient-id", "LUA", "--seed", "11")
	ids, err := o.Upload(context.Background(), src.Dir)
	if err != nil || len(ids) != 1 {
		t.Fatalf("upload: %v %v", ids, err)
	}
	first := ids[0]
	// failure is what the script prints for a series it could not post.
	failure := func(series string) string {
		return "segbridge: could not notify http://" + listen + "/v1/events/orthanc of series " + series
	}
	waitLog := func(t *testing.T, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(o.Log(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("Orthanc's log has no %q within 30 s:\n%s", want, tail(o.Log(), 3000))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	startBridge := func(t *testing.T, token string) (*Server, *fakeQueue) {
		t.Helper()
		q := &fakeQueue{jobs: map[string]*queue.Status{}}
		fo := &fakeOrthanc{}
		in, err := intake.New(zerolog.Nop(), q, fo, nil, intake.Config{Models: []*model.Model{testModelWith(t, "{ modalities: [MR] }")}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(zerolog.Nop(), q, in, fo, Config{Listen: listen, WebhookToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Stop(context.Background()) })
		return s, q
	}

	t.Run("bridge not listening", func(t *testing.T) {
		waitLog(t, failure(first)+": the bridge is unreachable")
	})

	t.Run("wrong token: 401", func(t *testing.T) {
		s, q := startBridge(t, "bridge-token-"+strings.Repeat("8", 30))
		id := modifySeries(t, o, first, "wrong token")
		waitLog(t, failure(id)+": the bridge answered with an HTTP error")
		if m := scrape(t, s); !strings.Contains(m, `segbridge_webhook_requests_total{code="401"} 1`+"\n") {
			t.Errorf("metrics do not count the 401:\n%s", m)
		}
		if n := len(q.jobs); n != 0 {
			t.Errorf("%d jobs queued with a wrong token", n)
		}
		_ = s.Stop(context.Background())
	})

	t.Run("right token: queued, no message", func(t *testing.T) {
		s, q := startBridge(t, luaToken)
		id := modifySeries(t, o, first, "right token")
		jobID := queue.JobID(id, "m", "1")
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := q.Status(context.Background(), jobID); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("series %s not queued within 30 s:\n%s", id, tail(o.Log(), 3000))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if strings.Contains(o.Log(), failure(id)) {
			t.Errorf("the script reported a post that succeeded:\n%s", tail(o.Log(), 3000))
		}
		if m := scrape(t, s); !strings.Contains(m, `segbridge_webhook_requests_total{code="202"} 1`+"\n") {
			t.Errorf("metrics do not count the 202:\n%s", m)
		}
	})

	if strings.Contains(o.Log(), luaToken) {
		t.Errorf("Orthanc's log holds the webhook token:\n%s", o.Log())
	}
}

// modifySeries makes a new series in Orthanc from an existing one (new UIDs,
// same pixels); Orthanc reports it stable like any other.
func modifySeries(t *testing.T, o *orthanctest.Server, id, description string) string {
	t.Helper()
	body := `{"Replace":{"SeriesDescription":"` + description + `"}}`
	req, _ := http.NewRequest(http.MethodPost, o.URL+"/series/"+id+"/modify", strings.NewReader(body))
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

func scrape(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
