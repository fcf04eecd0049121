package deploy

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/queue"
)

var units = []string{"segbridge.service", "segbridge-worker.service", "segbridge-nats.service"}

func systemdAnalyze(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found: install Debian's systemd package (make deps does)")
	}
	return bin
}

// unitValues returns the values of a directive in a unit file, in order.
func unitValues(t *testing.T, unit, key string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("systemd", unit))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// verifyRoot makes a file system root for systemd-analyze verify --root: the
// distribution's units (sysinit.target and the rest that ours pull in), ours
// as an administrator installs them, and stand-ins for the programs they
// run, which verify checks are executable.
func verifyRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	sys := "/usr/lib/systemd/system"
	if _, err := os.Stat(sys); err != nil {
		sys = "/lib/systemd/system"
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", sys, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v %s", sys, err, out)
	}
	etc := filepath.Join(root, "etc/systemd/system")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join("systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(etc, u), b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"ExecStart", "ExecReload"} {
			for _, cmd := range unitValues(t, u, key) {
				prog := filepath.Join(root, strings.Fields(cmd)[0])
				if err := os.MkdirAll(filepath.Dir(prog), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return root
}

// verify runs systemd-analyze verify on the named units of root and returns
// what it said. It exits 0 on unknown directives and bad values and only
// says so, so anything it says is a failure.
func verify(t *testing.T, root string, names ...string) string {
	t.Helper()
	args := append([]string{"verify", "--root=" + root, "--man=no", "--generators=no"}, names...)
	out, err := exec.Command(systemdAnalyze(t), args...).CombinedOutput()
	msg := strings.TrimSpace(string(out))
	if err != nil && msg == "" {
		msg = err.Error()
	}
	return msg
}

func TestSystemdUnits_Verify(t *testing.T) {
	root := verifyRoot(t)
	if msg := verify(t, root, units...); msg != "" {
		t.Fatalf("systemd-analyze verify:\n%s", msg)
	}

	t.Run("a mistake in a unit is caught", func(t *testing.T) {
		p := filepath.Join(root, "etc/systemd/system", units[0])
		b, _ := os.ReadFile(p)
		bad := strings.Replace(string(b), "ProtectSystem=strict", "ProtectSystem=strictly\nRestartAlways=yes", 1)
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		msg := verify(t, root, units[0])
		if !strings.Contains(msg, "strictly") || !strings.Contains(msg, "RestartAlways") {
			t.Fatalf("verify said %q about a bad value and an unknown directive", msg)
		}
	})
}

func TestSystemdUnits_Security(t *testing.T) {
	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for _, u := range units {
		t.Run(u, func(t *testing.T) {
			out, err := exec.Command(systemdAnalyze(t), "security", "--offline=true", filepath.Join("systemd", u)).CombinedOutput()
			m := exposure.FindSubmatch(out)
			if m == nil {
				t.Fatalf("systemd-analyze security: %v\n%s", err, out)
			}
			score, _ := strconv.ParseFloat(string(m[1]), 64)
			t.Logf("%s: exposure %.1f (0 is best, 10 worst; below 2 is \"OK\")", u, score)
			if score > 2 {
				t.Errorf("%s: exposure %.1f, want at most 2.0:\n%s", u, score, out)
			}
			for key, want := range map[string]string{
				"Restart": "always", "DynamicUser": "yes", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
				"ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
			} {
				if got := unitValues(t, u, key); !slices.Contains(got, want) {
					t.Errorf("%s: %s=%v, want %q", u, key, got, want)
				}
			}
			for _, key := range []string{"EnvironmentFile", "LoadCredential", "ExecReload"} {
				if len(unitValues(t, u, key)) == 0 {
					t.Errorf("%s has no %s", u, key)
				}
			}
		})
	}
	for _, u := range []string{"segbridge.service", "segbridge-nats.service"} {
		if len(unitValues(t, u, "StateDirectory")) == 0 {
			t.Errorf("%s keeps JetStream files but has no StateDirectory", u)
		}
	}
}

// clusterEnv is a node's environment as the cluster test gives it, with
// certificates made by make-certs.sh.
func clusterEnv(t *testing.T) map[string]string {
	t.Helper()
	pki := t.TempDir()
	if out, err := exec.Command("sh", "nats/make-certs.sh", pki, "n1=127.0.0.1,localhost").CombinedOutput(); err != nil {
		t.Fatalf("make-certs.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"ca.pem", "n1.pem", "n1.key"} {
		if _, err := os.Stat(filepath.Join(pki, f)); err != nil {
			t.Fatalf("make-certs.sh made no %s", f)
		}
	}
	if fi, err := os.Stat(filepath.Join(pki, "n1.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the node's key has mode %v, want 0600", fi.Mode().Perm())
	}
	return map[string]string{
		"NATS_NAME": "n1", "NATS_LISTEN": "127.0.0.1:4222", "NATS_MONITOR": "127.0.0.1:8222",
		"NATS_STORE_DIR": t.TempDir(), "NATS_CLUSTER_LISTEN": "127.0.0.1:6222",
		"NATS_ROUTE_1": "nats-route://127.0.0.1:6222", "NATS_ROUTE_2": "nats-route://127.0.0.1:6223", "NATS_ROUTE_3": "nats-route://127.0.0.1:6224",
		"NATS_TLS_CA": filepath.Join(pki, "ca.pem"), "NATS_TLS_CERT": filepath.Join(pki, "n1.pem"), "NATS_TLS_KEY": filepath.Join(pki, "n1.key"),
		"SEGBRIDGE_BRIDGE_NKEY": "UAVLE45AXKDJRIBXZHJMKV5F63CSFSX3J6L3PMYJSAFKXCNUD4PLUYZU",
		"SEGBRIDGE_WORKER_NKEY": "UA7GBH5VASE7B6LKIUG4LQJVUVQ2CKNX4ROV4J2XUB25GI5XR72SBWO7",
	}
}

func TestNATSConfig(t *testing.T) {
	env := clusterEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile("nats/segbridge-nats.conf")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the node's own values come from its environment", func(t *testing.T) {
		if opts.ServerName != "n1" || opts.Port != 4222 || opts.Cluster.Port != 6222 || opts.HTTPHost != "127.0.0.1" || opts.StoreDir != env["NATS_STORE_DIR"] {
			t.Errorf("name %s, port %d, route port %d, monitor %s, store %s", opts.ServerName, opts.Port, opts.Cluster.Port, opts.HTTPHost, opts.StoreDir)
		}
		if opts.Cluster.Name != "segbridge" || len(opts.Routes) != 3 || !opts.JetStream {
			t.Errorf("cluster %q, %d routes, JetStream %v", opts.Cluster.Name, len(opts.Routes), opts.JetStream)
		}
	})
	t.Run("clients need TLS, routes mutual TLS", func(t *testing.T) {
		if opts.TLSConfig == nil || opts.TLSConfig.MinVersion < tls.VersionTLS12 {
			t.Error("the client port has no TLS")
		}
		if opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Error("routes do not verify each other's certificates")
		}
	})
	t.Run("the bridge and worker keys have the queue's permissions", func(t *testing.T) {
		users := map[string]*server.NkeyUser{}
		for _, u := range opts.Nkeys {
			users[u.Nkey] = u
		}
		worker, bridge := users[env["SEGBRIDGE_WORKER_NKEY"]], users[env["SEGBRIDGE_BRIDGE_NKEY"]]
		if worker == nil || bridge == nil || len(users) != 2 || len(opts.Users) != 0 {
			t.Fatalf("nkey users %v, other users %d: want the bridge's and the worker's keys only", users, len(opts.Users))
		}
		if worker.Account == nil || bridge.Account == nil || worker.Account.Name != "SEGBRIDGE" || bridge.Account.Name != "SEGBRIDGE" {
			t.Fatal("the bridge and the worker must share the SEGBRIDGE account (the worker pulls from its stream)")
		}
		samePermissions(t, "worker", worker.Permissions, queue.WorkerPermissions())
		samePermissions(t, "bridge", bridge.Permissions, queue.BridgePermissions())
	})
}

// samePermissions compares permissions as sets of subjects.
func samePermissions(t *testing.T, who string, got, want *server.Permissions) {
	t.Helper()
	subjects := func(p *server.SubjectPermission) [2][]string {
		if p == nil {
			return [2][]string{}
		}
		a, d := slices.Clone(p.Allow), slices.Clone(p.Deny)
		slices.Sort(a)
		slices.Sort(d)
		return [2][]string{a, d}
	}
	if got == nil {
		t.Fatalf("%s: no permissions in the configuration", who)
	}
	for _, c := range []struct {
		name      string
		got, want *server.SubjectPermission
	}{{"publish", got.Publish, want.Publish}, {"subscribe", got.Subscribe, want.Subscribe}} {
		g, w := subjects(c.got), subjects(c.want)
		if !slices.Equal(g[0], w[0]) || !slices.Equal(g[1], w[1]) {
			t.Errorf("%s may %s: allow %v deny %v; the queue says allow %v deny %v", who, c.name, g[0], g[1], w[0], w[1])
		}
	}
}

// readEnv reads an environment file: KEY=VALUE lines and # comments, as
// systemd's EnvironmentFile= does for these files.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(v, "#\"' ") {
			t.Errorf("%s:%d: %q is not a plain KEY=VALUE line", path, n+1, line)
			continue
		}
		env[k] = v
	}
	return env
}

// TestEnvFiles checks that the example environment files name only
// variables segbridge reads (and secrets only through _FILE), and that the
// NATS node's file gives every variable the cluster's configuration uses.
func TestEnvFiles(t *testing.T) {
	known := map[string]bool{}
	ct := reflect.TypeOf(config.Config{})
	for i := range ct.NumField() {
		if name, _, _ := strings.Cut(ct.Field(i).Tag.Get("env"), ","); name != "" {
			known[name] = true
		}
	}
	for _, s := range config.SecretVars {
		known[s+"_FILE"] = true
	}
	files, _ := filepath.Glob("env/*/segbridge*.env")
	if len(files) != 5 {
		t.Fatalf("env files %v, want the three setups' five", files)
	}
	for _, f := range files {
		unit := "segbridge.service"
		if strings.HasSuffix(f, "segbridge-worker.env") {
			unit = "segbridge-worker.service"
		}
		for k, v := range readEnv(t, f) {
			if !known[k] {
				t.Errorf("%s: segbridge reads no variable %s", f, k)
			}
			if slices.Contains(config.SecretVars, k) {
				t.Errorf("%s: the secret %s is in the file; use %s_FILE and a credential", f, k, k)
			}
			// A secret or key file is one of the unit's credentials.
			if strings.HasSuffix(k, "_FILE") || k == "SEGBRIDGE_NATS_NKEY_SEED" || k == "SEGBRIDGE_NATS_TLS_KEY" {
				if !strings.HasPrefix(v, "/run/credentials/"+unit+"/segbridge_") {
					t.Errorf("%s: %s=%s is not a credential of %s (LoadCredential=segbridge:/etc/segbridge/credentials)", f, k, v, unit)
				}
			}
		}
	}

	conf, err := os.ReadFile("nats/segbridge-nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	// The variables the configuration reads from the environment: every
	// $NAME outside quotes that the file does not define.
	text := regexp.MustCompile(`"[^"]*"|#.*`).ReplaceAllString(string(conf), "")
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z][A-Z0-9_]*)\s*=`).FindAllStringSubmatch(text, -1) {
		defined[m[1]] = true
	}
	want := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(text, -1) {
		if !defined[m[1]] {
			want[m[1]] = true
		}
	}
	got := readEnv(t, "env/cluster/nats.env")
	// segbridge-nats.service sets these two itself.
	for _, k := range unitValues(t, "segbridge-nats.service", "Environment") {
		name, _, _ := strings.Cut(k, "=")
		got[name] = "(unit)"
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("nats.conf reads $%s, which neither nats.env nor segbridge-nats.service sets", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("nats.env sets %s, which nats.conf does not read", k)
		}
	}
}
