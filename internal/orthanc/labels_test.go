package orthanc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/orthanctest"
)

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    bool
	}{
		{"1.10.1", false}, {"1.11.3", false}, {"1.12.0", true}, {"1.12.10", true}, {"2.0.0", true},
		{"mainline", true}, {"", false}, {"banana", false}, {"1", false},
	} {
		if got := orthanc.VersionAtLeast(tc.version, 1, 12); got != tc.want {
			t.Errorf("VersionAtLeast(%q, 1, 12) = %v, want %v", tc.version, got, tc.want)
		}
	}
}

// TestClient_Labels checks the label calls against a stand-in for an Orthanc
// 1.12 (Debian has 1.10, which has no labels), and that the real 1.10 is
// found to have none.
func TestClient_Labels(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []string
	)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/system" {
			_, _ = w.Write([]byte(`{"Name":"fake","Version":"1.12.4","ApiVersion":22}`))
			return
		}
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path)
		mu.Unlock()
	}))
	defer fake.Close()
	ctx := context.Background()
	c, err := orthanc.NewClient(zerolog.Nop(), orthanc.Config{URL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.SupportsLabels(ctx); err != nil || !ok {
		t.Fatalf("SupportsLabels on 1.12.4 = %v, %v", ok, err)
	}
	if err := c.SetLabel(ctx, "studies", "abc", "ai-done", true); err != nil {
		t.Fatal(err)
	}
	if err := c.SetLabel(ctx, "series", "def", "ai-failed", false); err != nil {
		t.Fatal(err)
	}
	want := []string{"PUT /studies/abc/labels/ai-done", "DELETE /series/def/labels/ai-failed"}
	if !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}

	srv := orthanctest.Start(t, orthanctest.Options{})
	real, err := orthanc.NewClient(zerolog.Nop(), orthanc.Config{URL: srv.URL, User: srv.User, Password: srv.Password})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := real.SupportsLabels(ctx); err != nil || ok {
		t.Errorf("SupportsLabels on Debian's Orthanc = %v, %v; want false (1.10 has no labels)", ok, err)
	}
}
