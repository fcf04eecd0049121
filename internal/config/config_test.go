package config

import (
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnv_Defaults(t *testing.T) {
	c, err := FromEnv(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.OrthancURL != "http://127.0.0.1:8042" || c.Listen != "127.0.0.1:8080" || c.Device != "cpu" || c.Workers != 1 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFromEnv_Errors(t *testing.T) {
	tests := []struct {
		name, key, value, want string
	}{
		{"device", "DEVICE", "tpu", "DEVICE"},
		{"threshold", "THRESHOLD", "1.5", "THRESHOLD"},
		{"workers", "SEGBRIDGE_WORKERS", "-1", "SEGBRIDGE_WORKERS"},
		{"ack wait", "SEGBRIDGE_ACK_WAIT", "10ms", "SEGBRIDGE_ACK_WAIT"},
		{"password file", "ORTHANC_PASSWORD_FILE", "/nonexistent/pw", "ORTHANC_PASSWORD_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromEnv(envOf(map[string]string{tt.key: tt.value}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestConfig_ValidateServe(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"no webhook token", map[string]string{}, "SEGBRIDGE_WEBHOOK_TOKEN is required"},
		{"short webhook token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": "abc"}, "too short"},
		{"loopback without API token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": "0123456789abcdef"}, ""},
		{"open listener without API token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": "0123456789abcdef", "SEGBRIDGE_LISTEN": "0.0.0.0:8080"}, "SEGBRIDGE_API_TOKEN"},
		{"open listener with API token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": "0123456789abcdef", "SEGBRIDGE_LISTEN": "0.0.0.0:8080", "SEGBRIDGE_API_TOKEN": "x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(envOf(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			err = c.ValidateServe()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ValidateServe() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
