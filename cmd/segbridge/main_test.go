package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/internal/fixture"
)

// TestRun_LogsConfigurationWarnings: a secret file others can read is
// logged as a warning naming the variable and the file, never the secret.
func TestRun_LogsConfigurationWarnings(t *testing.T) {
	const secret = "warn-me-not-warn-me-not-warn-me-not"
	path := filepath.Join(t.TempDir(), "api-token")
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"SEGBRIDGE_API_TOKEN_FILE": path,
		"MODEL_PATH":               filepath.Join(fixture.Root(t), "testdata/models/head-threshold.yaml"),
		"SEGBRIDGE_LOG_FORMAT":     "json",
	}
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"models"}, func(k string) string { return env[k] }, io.Discard, &stderr); err != nil {
		t.Fatalf("segbridge models: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), secret) {
		t.Fatalf("the log holds the secret:\n%s", stderr.String())
	}
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec struct{ Level, Message string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "warn" &&
			strings.Contains(rec.Message, "SEGBRIDGE_API_TOKEN_FILE") && strings.Contains(rec.Message, path) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no warning about SEGBRIDGE_API_TOKEN_FILE in the log:\n%s", stderr.String())
	}
}
