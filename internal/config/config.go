// Package config reads segbridge's settings from the environment (the seed
// system's variable names where it had one, SEGBRIDGE_* for the rest),
// fills defaults and validates them, naming the variable at fault.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Config is every setting of the segbridge binary. Each field documents its
// environment variable and default.
type Config struct {
	// OrthancURL (ORTHANC_URL, default http://127.0.0.1:8042) is Orthanc's REST API.
	OrthancURL string
	// OrthancUser and OrthancPassword (ORTHANC_USER, ORTHANC_PASSWORD, or
	// ORTHANC_PASSWORD_FILE) authenticate to Orthanc. No default.
	OrthancUser     string
	OrthancPassword string
	// OrthancPublicURL (SEGBRIDGE_ORTHANC_PUBLIC_URL, default OrthancURL) is
	// the base of the Orthanc Explorer links the API returns.
	OrthancPublicURL string
	// OrthancGDCMRestricted (SEGBRIDGE_ORTHANC_GDCM_RESTRICTED, default
	// false) says that Orthanc's GDCM plugin, if loaded, is restricted to
	// JPEG 2000, so that Orthanc's own codecs transcode the JPEG family.
	OrthancGDCMRestricted bool

	// Listen (SEGBRIDGE_LISTEN, default 127.0.0.1:8080) is the HTTP address.
	Listen string
	// WebhookToken (SEGBRIDGE_WEBHOOK_TOKEN or SEGBRIDGE_WEBHOOK_TOKEN_FILE)
	// is the bearer token Orthanc's Lua script sends. Required by serve: at
	// least 16 characters, MinNetworkTokenLen when Listen is not loopback.
	WebhookToken string
	// APIToken (SEGBRIDGE_API_TOKEN or SEGBRIDGE_API_TOKEN_FILE) protects the
	// manual trigger and status API. Optional on a loopback listener,
	// required on any other, with at least MinNetworkTokenLen characters.
	APIToken string
	// DataDir (SEGBRIDGE_DATA_DIR, default ./segbridge-data) holds the
	// embedded queue's files.
	DataDir string

	// NATSURL (SEGBRIDGE_NATS_URL) selects an external NATS server instead of
	// the embedded one. NATSToken (SEGBRIDGE_NATS_TOKEN[_FILE]), NATSCreds
	// (SEGBRIDGE_NATS_CREDS) and NATSNKeySeed (SEGBRIDGE_NATS_NKEY_SEED) are
	// its credentials. NATSListen (SEGBRIDGE_NATS_LISTEN) opens the embedded
	// server to remote workers; it needs NATSToken, of at least
	// MinNetworkTokenLen characters when NATSListen is not loopback.
	NATSURL      string
	NATSToken    string
	NATSCreds    string
	NATSNKeySeed string
	NATSListen   string
	// NATSTLSCA, NATSTLSCert and NATSTLSKey (SEGBRIDGE_NATS_TLS_CA,
	// SEGBRIDGE_NATS_TLS_CERT, SEGBRIDGE_NATS_TLS_KEY) are PEM files for TLS
	// to an external NATS server: its CA, and a client certificate and key.
	NATSTLSCA   string
	NATSTLSCert string
	NATSTLSKey  string
	// NATSAllowPlaintext (SEGBRIDGE_NATS_ALLOW_PLAINTEXT, default false)
	// allows SEGBRIDGE_NATS_LISTEN on a non-loopback address without TLS,
	// for a listener behind a VPN or TLS tunnel. With TLS, the embedded
	// listener uses SEGBRIDGE_NATS_TLS_CERT and _KEY as its certificate and,
	// when set, requires client certificates signed by SEGBRIDGE_NATS_TLS_CA.
	NATSAllowPlaintext bool

	// RetryDelay (SEGBRIDGE_RETRY_DELAY, default 5s) is the delay before a
	// job that failed for a transient reason is tried again; it doubles with
	// each attempt, up to 5 minutes.
	RetryDelay time.Duration
	// ReconcileInterval (SEGBRIDGE_RECONCILE_INTERVAL, default 5s; "off"
	// disables) is how often the bridge reads Orthanc's /changes feed.
	ReconcileInterval time.Duration
	// ReconcileFrom (SEGBRIDGE_RECONCILE_FROM, default "latest") is where the
	// reconciler starts when it has no saved position: "latest" (only new
	// changes) or a change number (0: every series Orthanc holds). -1 means
	// latest.
	ReconcileFrom int64
	// DjangoWait (SEGBRIDGE_DJANGO_WAIT, default 300s) is how long the seed's
	// POST /api/mri/segmentation/series/{id}/segment/ waits for the result.
	// The bridge lets at most 256 such requests wait at once (the next get
	// 202 at once) and answers them all 202 when it stops; its HTTP server's
	// other limits (10 s for headers, 30 s per request, 60 s per answer,
	// 120 s idle, 64 KiB of headers) are bridge.Config's defaults and have
	// no variables.
	DjangoWait time.Duration

	// ModelsDir (SEGBRIDGE_MODELS_DIR) is a folder of model manifests.
	// ModelPath (MODEL_PATH) is one manifest (.yaml) — the seed's variable.
	// At least one is needed to run workers.
	ModelsDir string
	ModelPath string
	// ModelFiles (SEGBRIDGE_MODEL_FILES, a colon-separated list of folders)
	// are searched for a manifest's relative file and colormap when they are
	// not beside the manifest. Default none.
	ModelFiles []string
	// Model (SEGBRIDGE_MODEL) names the model used for automatic triggers;
	// default: the only model found, or an error if there are several.
	Model string
	// Device (DEVICE, default cpu) is cpu or cuda.
	Device string
	// Threshold (THRESHOLD) overrides a sigmoid model's threshold; 0 = the
	// manifest's.
	Threshold float64
	// ORTLibrary (SEGBRIDGE_ORT_LIB, default .deps/onnxruntime/libonnxruntime.so.1
	// when present) is the ONNX Runtime shared library.
	ORTLibrary string
	// IntraOpThreads (SEGBRIDGE_ORT_THREADS, default 0 = ONNX Runtime's choice).
	IntraOpThreads int

	// Workers (SEGBRIDGE_WORKERS, default 1 for serve) is the number of
	// in-process workers; 0 runs a bridge without workers.
	Workers int
	// DownloadConcurrency (SEGBRIDGE_DOWNLOAD_CONCURRENCY, default 8) is how
	// many instances a worker downloads at once.
	DownloadConcurrency int
	// MaxVoxels (SEGBRIDGE_MAX_VOXELS, default 536870912 = 512x512x2048) and
	// MaxBytes (SEGBRIDGE_MAX_BYTES, default 2 GiB: 4 bytes per voxel) bound
	// the series a worker accepts; a larger one fails with the reason.
	MaxVoxels int
	MaxBytes  int
	// AckWait (SEGBRIDGE_ACK_WAIT, default 60s) is a worker's lease on a job.
	AckWait time.Duration
	// MaxAttempts (SEGBRIDGE_MAX_ATTEMPTS, default 5) is how often a job is tried.
	MaxAttempts int
	// Modalities (SEGBRIDGE_MODALITIES, default MR) are the modalities that
	// webhook events may queue.
	Modalities []string
	// LogLevel (SEGBRIDGE_LOG_LEVEL, default info) and LogFormat
	// (SEGBRIDGE_LOG_FORMAT: json or console; default console on a terminal).
	LogLevel  string
	LogFormat string

	// Warnings are what FromEnv found worth fixing that does not stop
	// segbridge, e.g. a secret file others can read. main logs them; they
	// name variables and files, never a secret.
	Warnings []string
}

// MinNetworkTokenLen is the shortest token accepted on a listener beyond
// loopback: 32 characters, what `openssl rand -hex 16` gives. A shorter one
// could be a word or a name someone picked, and guessing it opens the queue
// or the API to the network.
const MinNetworkTokenLen = 32

// FromEnv reads the configuration from getenv (os.Getenv in main).
func FromEnv(getenv func(string) string) (*Config, error) {
	c := &Config{
		OrthancURL:          or(getenv("ORTHANC_URL"), "http://127.0.0.1:8042"),
		OrthancUser:         getenv("ORTHANC_USER"),
		Listen:              or(getenv("SEGBRIDGE_LISTEN"), "127.0.0.1:8080"),
		DataDir:             or(getenv("SEGBRIDGE_DATA_DIR"), "segbridge-data"),
		NATSURL:             getenv("SEGBRIDGE_NATS_URL"),
		NATSCreds:           getenv("SEGBRIDGE_NATS_CREDS"),
		NATSNKeySeed:        getenv("SEGBRIDGE_NATS_NKEY_SEED"),
		NATSListen:          getenv("SEGBRIDGE_NATS_LISTEN"),
		NATSTLSCA:           getenv("SEGBRIDGE_NATS_TLS_CA"),
		NATSTLSCert:         getenv("SEGBRIDGE_NATS_TLS_CERT"),
		NATSTLSKey:          getenv("SEGBRIDGE_NATS_TLS_KEY"),
		RetryDelay:          5 * time.Second,
		ReconcileInterval:   5 * time.Second,
		ReconcileFrom:       -1,
		DjangoWait:          300 * time.Second,
		ModelsDir:           getenv("SEGBRIDGE_MODELS_DIR"),
		ModelPath:           getenv("MODEL_PATH"),
		ModelFiles:          filepath.SplitList(getenv("SEGBRIDGE_MODEL_FILES")),
		Model:               getenv("SEGBRIDGE_MODEL"),
		Device:              strings.ToLower(or(getenv("DEVICE"), "cpu")),
		ORTLibrary:          getenv("SEGBRIDGE_ORT_LIB"),
		LogLevel:            or(getenv("SEGBRIDGE_LOG_LEVEL"), "info"),
		LogFormat:           getenv("SEGBRIDGE_LOG_FORMAT"),
		Modalities:          splitList(or(getenv("SEGBRIDGE_MODALITIES"), "MR")),
		Workers:             1,
		DownloadConcurrency: 8,
		AckWait:             60 * time.Second,
		MaxAttempts:         5,
	}
	c.OrthancPublicURL = or(getenv("SEGBRIDGE_ORTHANC_PUBLIC_URL"), c.OrthancURL)
	var errs []error
	if v := getenv("SEGBRIDGE_ORTHANC_GDCM_RESTRICTED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("SEGBRIDGE_ORTHANC_GDCM_RESTRICTED: %q is not true or false", v))
		}
		c.OrthancGDCMRestricted = b
	}
	secret := func(name string, dst *string) {
		v, warn, err := fromFileOrEnv(getenv, name)
		if err != nil {
			errs = append(errs, err)
		}
		if warn != "" {
			c.Warnings = append(c.Warnings, warn)
		}
		*dst = v
	}
	secret("ORTHANC_PASSWORD", &c.OrthancPassword)
	secret("SEGBRIDGE_WEBHOOK_TOKEN", &c.WebhookToken)
	secret("SEGBRIDGE_API_TOKEN", &c.APIToken)
	secret("SEGBRIDGE_NATS_TOKEN", &c.NATSToken)

	intVar := func(name string, dst *int, min int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < min {
				errs = append(errs, fmt.Errorf("%s: %q is not a whole number >= %d", name, v, min))
				return
			}
			*dst = n
		}
	}
	intVar("SEGBRIDGE_WORKERS", &c.Workers, 0)
	intVar("SEGBRIDGE_DOWNLOAD_CONCURRENCY", &c.DownloadConcurrency, 1)
	intVar("SEGBRIDGE_MAX_VOXELS", &c.MaxVoxels, 0)
	intVar("SEGBRIDGE_MAX_BYTES", &c.MaxBytes, 0)
	intVar("SEGBRIDGE_MAX_ATTEMPTS", &c.MaxAttempts, 1)
	intVar("SEGBRIDGE_ORT_THREADS", &c.IntraOpThreads, 0)
	if v := getenv("SEGBRIDGE_ACK_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf("SEGBRIDGE_ACK_WAIT: %q is not a duration of at least 1s (e.g. 60s)", v))
		} else {
			c.AckWait = d
		}
	}
	durVar := func(name string, dst *time.Duration, min time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < min {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration of at least %s (e.g. 5s)", name, v, min))
				return
			}
			*dst = d
		}
	}
	durVar("SEGBRIDGE_RETRY_DELAY", &c.RetryDelay, 100*time.Millisecond)
	durVar("SEGBRIDGE_DJANGO_WAIT", &c.DjangoWait, 0)
	if v := getenv("SEGBRIDGE_RECONCILE_INTERVAL"); v == "off" || v == "0" {
		c.ReconcileInterval = 0
	} else {
		durVar("SEGBRIDGE_RECONCILE_INTERVAL", &c.ReconcileInterval, 100*time.Millisecond)
	}
	if v := getenv("SEGBRIDGE_RECONCILE_FROM"); v != "" && v != "latest" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("SEGBRIDGE_RECONCILE_FROM: %q is not \"latest\" or a change number >= 0", v))
		} else {
			c.ReconcileFrom = n
		}
	}
	if v := getenv("SEGBRIDGE_NATS_ALLOW_PLAINTEXT"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("SEGBRIDGE_NATS_ALLOW_PLAINTEXT: %q is not true or false", v))
		}
		c.NATSAllowPlaintext = b
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		errs = append(errs, errors.New("SEGBRIDGE_NATS_TLS_CERT and SEGBRIDGE_NATS_TLS_KEY must be set together"))
	}
	if v := getenv("THRESHOLD"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f >= 1 {
			errs = append(errs, fmt.Errorf("THRESHOLD: %q is not a number between 0 and 1", v))
		} else {
			c.Threshold = f
		}
	}
	if c.Device != "cpu" && c.Device != "cuda" {
		errs = append(errs, fmt.Errorf("DEVICE: %q is not cpu or cuda", c.Device))
	}
	if c.ORTLibrary == "" {
		if _, err := os.Stat(".deps/onnxruntime/libonnxruntime.so.1"); err == nil {
			c.ORTLibrary = ".deps/onnxruntime/libonnxruntime.so.1"
		}
	}
	return c, errors.Join(errs...)
}

// ValidateServe checks what `segbridge serve` needs: a webhook token, an
// API token unless the listener is loopback only, and tokens long enough to
// be secret wherever they guard a listener beyond loopback
// (MinNetworkTokenLen): the webhook and API tokens when SEGBRIDGE_LISTEN is
// not loopback, the NATS token when SEGBRIDGE_NATS_LISTEN is not.
func (c *Config) ValidateServe() error {
	var errs []error
	loop, err := IsLoopback(c.Listen)
	if err != nil {
		errs = append(errs, fmt.Errorf("SEGBRIDGE_LISTEN: %w", err))
		loop = true // reported; do not pile length errors on top
	}
	switch {
	case c.WebhookToken == "":
		errs = append(errs, errors.New("SEGBRIDGE_WEBHOOK_TOKEN is required (the Lua script sends it; make one with: openssl rand -hex 32)"))
	case !loop:
		errs = append(errs, networkToken("SEGBRIDGE_WEBHOOK_TOKEN", c.WebhookToken, "SEGBRIDGE_LISTEN", c.Listen))
	case len(c.WebhookToken) < 16:
		errs = append(errs, errors.New("SEGBRIDGE_WEBHOOK_TOKEN is too short: use at least 16 characters (make one with: openssl rand -hex 32)"))
	}
	switch {
	case loop:
	case c.APIToken == "":
		errs = append(errs, fmt.Errorf("SEGBRIDGE_LISTEN %q is not loopback: set SEGBRIDGE_API_TOKEN so the API is not open to the network (make one with: openssl rand -hex 32)", c.Listen))
	default:
		errs = append(errs, networkToken("SEGBRIDGE_API_TOKEN", c.APIToken, "SEGBRIDGE_LISTEN", c.Listen))
	}
	if c.NATSListen != "" {
		if nloop, err := IsLoopback(c.NATSListen); err != nil {
			errs = append(errs, fmt.Errorf("SEGBRIDGE_NATS_LISTEN: %w", err))
		} else if !nloop && c.NATSToken != "" {
			// A missing token is the queue's error to report (it needs one
			// on any listener); here only its length.
			errs = append(errs, networkToken("SEGBRIDGE_NATS_TOKEN", c.NATSToken, "SEGBRIDGE_NATS_LISTEN", c.NATSListen))
		}
	}
	return errors.Join(errs...)
}

// networkToken refuses a token too short for a listener beyond loopback,
// naming both variables; nil when it is long enough.
func networkToken(name, token, listenVar, listen string) error {
	if n := utf8.RuneCountInString(token); n < MinNetworkTokenLen {
		return fmt.Errorf("%s has %d characters: on a listener beyond loopback (%s=%s) it must have at least %d (make one with: openssl rand -hex 32)",
			name, n, listenVar, listen, MinNetworkTokenLen)
	}
	return nil
}

// ValidateWorker checks what running workers needs.
func (c *Config) ValidateWorker() error {
	var errs []error
	if c.ModelsDir == "" && c.ModelPath == "" {
		errs = append(errs, errors.New("set SEGBRIDGE_MODELS_DIR (a folder of model manifests) or MODEL_PATH (one manifest)"))
	}
	if c.ORTLibrary == "" {
		errs = append(errs, errors.New("SEGBRIDGE_ORT_LIB is not set and .deps/onnxruntime/libonnxruntime.so.1 is absent: run make deps"))
	}
	return errors.Join(errs...)
}

// IsLoopback reports whether a host:port listens on loopback only.
func IsLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("%q is not host:port", addr)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false, nil
	}
	return ip.IsLoopback(), nil
}

// fromFileOrEnv reads the secret name from the file NAME_FILE names, else
// from NAME. It warns about a file that its group or others may read: the
// secret is then as safe as every account on the machine.
func fromFileOrEnv(getenv func(string) string, name string) (value, warning string, err error) {
	f := getenv(name + "_FILE")
	if f == "" {
		return getenv(name), "", nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return "", "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	if fi, err := os.Stat(f); err == nil && fi.Mode().Perm()&0o044 != 0 {
		warning = fmt.Sprintf("%s_FILE %s is readable by its group or others (mode %04o): chmod 600 it", name, f, fi.Mode().Perm())
	}
	return strings.TrimSpace(string(b)), warning, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, strings.ToUpper(p))
	}
	return out
}
