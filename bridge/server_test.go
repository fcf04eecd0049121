package bridge

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func webhookBody(series string) string {
	return `{"event":"StableSeries","series_id":"` + series + `","tags":{"Modality":"MR","SeriesDescription":"T1"}}`
}

// TestServer_HalfOpenConnections holds 200 connections that send nothing or
// half a request line: the webhook keeps answering, and the server closes
// those connections once HeaderTimeout has passed.
func TestServer_HalfOpenConnections(t *testing.T) {
	const headerTimeout = 2 * time.Second
	_, q, base := startServer(t, Config{HeaderTimeout: headerTimeout})
	addr := strings.TrimPrefix(base, "http://")

	type held struct {
		conn   net.Conn
		opened time.Time
	}
	var conns []held
	t.Cleanup(func() {
		for _, h := range conns {
			h.conn.Close()
		}
	})
	for i := range 200 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, held{c, time.Now()})
		if i%2 == 1 {
			if _, err := io.WriteString(c, "POST /v1/events/orth"); err != nil {
				t.Fatal(err)
			}
		}
	}
	allOpen := time.Now()

	// The webhook while they are held: 50 events, 5 at a time.
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for w := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				id := strings.Replace(seriesID, "e22983f4", "0000000"+string(rune('0'+w)), 1)
				id = id[:len(id)-1] + string(rune('0'+i))
				req, _ := http.NewRequest(http.MethodPost, base+webhookPath, strings.NewReader(webhookBody(id)))
				req.Header.Set("Authorization", "Bearer "+testToken)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- errors.New("webhook answered " + resp.Status)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("webhook beside 200 half-open connections: %v", err)
	}
	if took := time.Since(allOpen); took >= headerTimeout {
		t.Fatalf("the webhooks took %s, longer than the header timeout: the half-open connections may have gone meanwhile", took)
	}
	q.mu.Lock()
	n := len(q.jobs)
	q.mu.Unlock()
	if n != 50 {
		t.Errorf("%d jobs queued, want 50", n)
	}

	// Each held connection is closed by the server after the header
	// timeout (a read sees the end of the stream), not before.
	deadline := time.Now().Add(headerTimeout + 10*time.Second)
	for i, h := range conns {
		_ = h.conn.SetReadDeadline(deadline)
		b, err := io.ReadAll(h.conn)
		closed := time.Since(h.opened)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("connection %d still open %s after it was opened (header timeout %s)", i, closed, headerTimeout)
		case err != nil && !errors.Is(err, syscall.ECONNRESET):
			t.Fatalf("connection %d: %v", i, err)
		}
		if closed < headerTimeout-100*time.Millisecond {
			t.Errorf("connection %d closed after %s, before the header timeout %s", i, closed, headerTimeout)
		}
		// net/http closes a silent connection without a word and answers
		// a half request line 400 as it closes.
		if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400 ") {
			t.Errorf("connection %d got %q", i, b)
		}
	}
}

func TestServer_MaxHeaderBytes(t *testing.T) {
	_, _, base := startServer(t, Config{MaxHeaderBytes: 4 << 10})
	req, _ := http.NewRequest(http.MethodGet, base+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("16 KiB of headers: %d, want 431", resp.StatusCode)
	}
}

func TestServer_WebhookRequestsTotal(t *testing.T) {
	_, _, base := startServer(t, Config{BodyLimit: "1K"})
	post := func(token, body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+webhookPath, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	want := []struct {
		token, body string
		code        int
	}{
		{testToken, webhookBody(seriesID), http.StatusAccepted},
		{"wrong-" + testToken, webhookBody(seriesID), http.StatusUnauthorized},
		{"", webhookBody(seriesID), http.StatusUnauthorized},
		{testToken, `{"series_id":`, http.StatusBadRequest},
		{testToken, strings.Repeat(" ", 2048), http.StatusRequestEntityTooLarge},
	}
	for _, w := range want {
		if code := post(w.token, w.body); code != w.code {
			t.Fatalf("webhook answered %d, want %d", code, w.code)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		"# TYPE segbridge_webhook_requests_total counter",
		`segbridge_webhook_requests_total{code="202"} 1`,
		`segbridge_webhook_requests_total{code="400"} 1`,
		`segbridge_webhook_requests_total{code="401"} 2`,
		`segbridge_webhook_requests_total{code="413"} 1`,
	} {
		if !strings.Contains(string(b), line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, b)
		}
	}
	if strings.Contains(string(b), `code="200"`) {
		t.Errorf("metrics count a webhook answer nobody got:\n%s", b)
	}
}
