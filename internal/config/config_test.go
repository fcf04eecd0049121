package config

import (
	"os"
	"path/filepath"
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
	short := "0123456789abcdef"                   // 16: enough on loopback only
	long := strings.Repeat("0123456789abcdef", 2) // 32
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string // each must appear; none: no error
		notErr  []string // must not appear
	}{
		{"no webhook token", map[string]string{}, []string{"SEGBRIDGE_WEBHOOK_TOKEN is required"}, nil},
		{"short webhook token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": "abc"}, []string{"too short"}, nil},
		{"loopback without API token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short}, nil, nil},
		{"localhost is loopback", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short, "SEGBRIDGE_LISTEN": "localhost:8080", "SEGBRIDGE_API_TOKEN": "x"}, nil, nil},
		{"IPv6 loopback", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short, "SEGBRIDGE_LISTEN": "[::1]:8080"}, nil, nil},
		{"open listener without API token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": long, "SEGBRIDGE_LISTEN": "0.0.0.0:8080"}, []string{"SEGBRIDGE_API_TOKEN"}, []string{"SEGBRIDGE_WEBHOOK_TOKEN"}},
		{"open listener with long tokens", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": long, "SEGBRIDGE_LISTEN": "0.0.0.0:8080", "SEGBRIDGE_API_TOKEN": long}, nil, nil},
		{"open listener, short API token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": long, "SEGBRIDGE_LISTEN": "0.0.0.0:8080", "SEGBRIDGE_API_TOKEN": long[:31]},
			[]string{"SEGBRIDGE_API_TOKEN has 31 characters", "at least 32"}, []string{"SEGBRIDGE_WEBHOOK_TOKEN", long}},
		{"open listener, short webhook token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short, "SEGBRIDGE_LISTEN": "10.0.0.5:8080", "SEGBRIDGE_API_TOKEN": long},
			[]string{"SEGBRIDGE_WEBHOOK_TOKEN has 16 characters", "SEGBRIDGE_LISTEN=10.0.0.5:8080"}, []string{"SEGBRIDGE_API_TOKEN", short}},
		{"all interfaces by empty host, both short", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short, "SEGBRIDGE_LISTEN": ":8080", "SEGBRIDGE_API_TOKEN": "api-token"},
			[]string{"SEGBRIDGE_WEBHOOK_TOKEN has 16", "SEGBRIDGE_API_TOKEN has 9"}, nil},
		{"a host name is not loopback", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short, "SEGBRIDGE_LISTEN": "bridge.internal:8080", "SEGBRIDGE_API_TOKEN": long},
			[]string{"SEGBRIDGE_WEBHOOK_TOKEN has 16"}, nil},
		{"short tokens on loopback are fine", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short, "SEGBRIDGE_API_TOKEN": "x", "SEGBRIDGE_NATS_LISTEN": "127.0.0.1:4222", "SEGBRIDGE_NATS_TOKEN": "y"}, nil, nil},
		{"open NATS listener, short token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short, "SEGBRIDGE_NATS_LISTEN": "0.0.0.0:4222", "SEGBRIDGE_NATS_TOKEN": long[:20]},
			[]string{"SEGBRIDGE_NATS_TOKEN has 20 characters", "SEGBRIDGE_NATS_LISTEN=0.0.0.0:4222"}, []string{"SEGBRIDGE_WEBHOOK_TOKEN", long[:20]}},
		{"open NATS listener, long token", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short, "SEGBRIDGE_NATS_LISTEN": "0.0.0.0:4222", "SEGBRIDGE_NATS_TOKEN": long}, nil, nil},
		{"characters, not bytes", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": strings.Repeat("é", 20), "SEGBRIDGE_LISTEN": "0.0.0.0:8080", "SEGBRIDGE_API_TOKEN": long},
			[]string{"SEGBRIDGE_WEBHOOK_TOKEN has 20 characters"}, nil},
		{"bad listen address", map[string]string{"SEGBRIDGE_WEBHOOK_TOKEN": short, "SEGBRIDGE_LISTEN": "8080"}, []string{"SEGBRIDGE_LISTEN"}, []string{"characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(envOf(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			err = c.ValidateServe()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("ValidateServe() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateServe() = nil, want an error with %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ValidateServe() = %v, want %q in it", err, w)
				}
			}
			for _, w := range tt.notErr {
				if strings.Contains(err.Error(), w) {
					t.Errorf("ValidateServe() = %v, must not say %q", err, w)
				}
			}
		})
	}
}

func TestFromEnv_SecretFileWarnings(t *testing.T) {
	const secret = "s3cret-s3cret-s3cret-s3cret-s3cret"
	tests := []struct {
		name     string
		mode     os.FileMode
		wantWarn bool
	}{
		{"owner only", 0o600, false},
		{"owner read only", 0o400, false},
		{"group readable", 0o640, true},
		{"others readable", 0o604, true},
		{"world readable", 0o644, true},
		{"group writable only", 0o620, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, name := range []string{"ORTHANC_PASSWORD", "SEGBRIDGE_WEBHOOK_TOKEN", "SEGBRIDGE_API_TOKEN", "SEGBRIDGE_NATS_TOKEN"} {
				path := filepath.Join(t.TempDir(), "secret")
				if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				// Set the mode explicitly: WriteFile's is filtered by the umask.
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
				c, err := FromEnv(envOf(map[string]string{name + "_FILE": path}))
				if err != nil {
					t.Fatal(err)
				}
				if got := secretOf(c, name); got != secret {
					t.Errorf("%s = %q, want the file's content", name, got)
				}
				if !tt.wantWarn {
					if len(c.Warnings) != 0 {
						t.Errorf("%s_FILE mode %04o: warnings %q, want none", name, tt.mode, c.Warnings)
					}
					continue
				}
				if len(c.Warnings) != 1 {
					t.Fatalf("%s_FILE mode %04o: warnings %q, want one", name, tt.mode, c.Warnings)
				}
				w := c.Warnings[0]
				if !strings.Contains(w, name+"_FILE") || !strings.Contains(w, path) || !strings.Contains(w, "chmod 600") {
					t.Errorf("warning %q does not name the variable, the file and the fix", w)
				}
				if strings.Contains(w, secret) {
					t.Errorf("warning %q holds the secret", w)
				}
			}
		})
	}
	t.Run("a systemd credential warns about nothing", func(t *testing.T) {
		// systemd's ACL on a credential shows as group bits (0440).
		dir := t.TempDir()
		path := filepath.Join(dir, "segbridge_api-token")
		if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o440); err != nil {
			t.Fatal(err)
		}
		c, err := FromEnv(envOf(map[string]string{"CREDENTIALS_DIRECTORY": dir, "SEGBRIDGE_API_TOKEN_FILE": path}))
		if err != nil || len(c.Warnings) != 0 || c.APIToken != secret {
			t.Fatalf("FromEnv: %v, warnings %q", err, c.Warnings)
		}
		// The same file outside the credentials folder is warned about.
		c, err = FromEnv(envOf(map[string]string{"CREDENTIALS_DIRECTORY": filepath.Join(dir, "other"), "SEGBRIDGE_API_TOKEN_FILE": path}))
		if err != nil || len(c.Warnings) != 1 {
			t.Fatalf("FromEnv: %v, warnings %q, want one", err, c.Warnings)
		}
	})
	t.Run("a secret from the environment warns about nothing", func(t *testing.T) {
		c, err := FromEnv(envOf(map[string]string{"SEGBRIDGE_API_TOKEN": secret}))
		if err != nil || len(c.Warnings) != 0 {
			t.Fatalf("FromEnv: %v, warnings %q", err, c.Warnings)
		}
	})
}

func secretOf(c *Config, name string) string {
	switch name {
	case "ORTHANC_PASSWORD":
		return c.OrthancPassword
	case "SEGBRIDGE_WEBHOOK_TOKEN":
		return c.WebhookToken
	case "SEGBRIDGE_API_TOKEN":
		return c.APIToken
	case "SEGBRIDGE_NATS_TOKEN":
		return c.NATSToken
	}
	return ""
}

func TestFromEnv_Notify(t *testing.T) {
	secret := strings.Repeat("0123456789abcdef", 2)
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string // "" for none
	}{
		{"off", nil, ""},
		{"URL and secret", map[string]string{"SEGBRIDGE_NOTIFY_URL": "https://127.0.0.1:9443/hook", "SEGBRIDGE_NOTIFY_SECRET": secret}, ""},
		{"URL without secret", map[string]string{"SEGBRIDGE_NOTIFY_URL": "http://127.0.0.1:9000/hook"}, "SEGBRIDGE_NOTIFY_SECRET"},
		{"short secret", map[string]string{"SEGBRIDGE_NOTIFY_URL": "http://127.0.0.1:9000/hook", "SEGBRIDGE_NOTIFY_SECRET": "short"}, "at least 32"},
		{"not http", map[string]string{"SEGBRIDGE_NOTIFY_URL": "ftp://127.0.0.1/hook", "SEGBRIDGE_NOTIFY_SECRET": secret}, "SEGBRIDGE_NOTIFY_URL"},
		{"credentials in URL", map[string]string{"SEGBRIDGE_NOTIFY_URL": "http://u:p@127.0.0.1/hook", "SEGBRIDGE_NOTIFY_SECRET": secret}, "without credentials"},
		{"secret without URL", map[string]string{"SEGBRIDGE_NOTIFY_SECRET": secret}, "SEGBRIDGE_NOTIFY_URL is not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromEnv(envOf(tc.env))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
			case tc.wantErr == "" && c.NotifySecret != tc.env["SEGBRIDGE_NOTIFY_SECRET"]:
				t.Fatalf("secret not read")
			}
		})
	}
}
