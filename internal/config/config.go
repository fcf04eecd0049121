// Package config reads segbridge's settings from the environment (the seed
// system's variable names where it had one, SEGBRIDGE_* for the rest),
// fills defaults and validates them, naming the variable at fault.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"
)

// Config is every setting of the segbridge binary. Each field names its
// environment variable and default in its tags (read by
// github.com/caarlos0/env): the defaults live here and nowhere else, and a
// test checks the README's tables against these tags. Secrets (the fields
// without an env tag below Secrets) are read by FromEnv from the variable or
// from the file its _FILE twin names.
type Config struct {
	// OrthancURL is Orthanc's REST API.
	OrthancURL string `env:"ORTHANC_URL" envDefault:"http://127.0.0.1:8042"`
	// OrthancUser authenticates to Orthanc with OrthancPassword. No default.
	OrthancUser string `env:"ORTHANC_USER"`
	// OrthancPublicURL is the base of the Orthanc Explorer links the API
	// returns; empty means OrthancURL.
	OrthancPublicURL string `env:"SEGBRIDGE_ORTHANC_PUBLIC_URL"`

	// Listen is the bridge's HTTP address.
	Listen string `env:"SEGBRIDGE_LISTEN" envDefault:"127.0.0.1:8080"`
	// DataDir holds the embedded queue's files.
	DataDir string `env:"SEGBRIDGE_DATA_DIR" envDefault:"./segbridge-data"`

	// NATSURL selects an external NATS server instead of the embedded one;
	// NATSCreds and NATSNKeySeed are credentials files for it (NATSToken is
	// a secret, below). NATSListen opens the embedded server to remote
	// workers; it needs NATSToken, of at least MinNetworkTokenLen characters
	// when NATSListen is not loopback.
	NATSURL      string `env:"SEGBRIDGE_NATS_URL"`
	NATSCreds    string `env:"SEGBRIDGE_NATS_CREDS"`
	NATSNKeySeed string `env:"SEGBRIDGE_NATS_NKEY_SEED"`
	NATSListen   string `env:"SEGBRIDGE_NATS_LISTEN"`
	// NATSReplicas is how many servers of an external JetStream cluster
	// keep the job stream and buckets (1, 3 or 5); the embedded server
	// takes only 1.
	NATSReplicas int `env:"SEGBRIDGE_NATS_REPLICAS" envDefault:"1"`
	// NATSTLSCA, NATSTLSCert and NATSTLSKey are PEM files. Connecting: the CA
	// of the server's certificate and a client certificate and key. On the
	// embedded listener: its certificate and key and, with a CA, required
	// client certificates signed by it.
	NATSTLSCA   string `env:"SEGBRIDGE_NATS_TLS_CA"`
	NATSTLSCert string `env:"SEGBRIDGE_NATS_TLS_CERT"`
	NATSTLSKey  string `env:"SEGBRIDGE_NATS_TLS_KEY"`
	// NATSAllowPlaintext allows NATSListen on a non-loopback address without
	// TLS, for a listener behind a VPN or TLS tunnel.
	NATSAllowPlaintext bool `env:"SEGBRIDGE_NATS_ALLOW_PLAINTEXT" envDefault:"false"`

	// RetryDelay is the delay before a job that failed for a transient
	// reason is tried again; it doubles with each attempt, up to 5 minutes.
	RetryDelay time.Duration `env:"SEGBRIDGE_RETRY_DELAY" envDefault:"5s"`
	// ReconcileInterval is how often the bridge reads Orthanc's /changes
	// feed; "off" (or 0) disables the reconciler.
	ReconcileInterval time.Duration `env:"SEGBRIDGE_RECONCILE_INTERVAL" envDefault:"5s"`
	// ReconcileFrom is where the reconciler starts when it has no saved
	// position: "latest" (only new changes, LatestChange) or a change number
	// (0: every series Orthanc holds).
	ReconcileFrom ChangeNumber `env:"SEGBRIDGE_RECONCILE_FROM" envDefault:"latest"`
	// DjangoWait is how long the seed's POST
	// /api/mri/segmentation/series/{id}/segment/ waits for the result (0s:
	// answer at once). The bridge lets at most 256 such requests wait at once
	// and answers them all 202 when it stops; its HTTP server's other limits
	// are bridge.Config's defaults and have no variables.
	DjangoWait time.Duration `env:"SEGBRIDGE_DJANGO_WAIT" envDefault:"300s"`

	// ModelsDir is a folder of model manifests; ModelPath (the seed's
	// variable) is one manifest. With neither, workers use the models
	// installed in DefaultModelsDir.
	ModelsDir string `env:"SEGBRIDGE_MODELS_DIR"`
	ModelPath string `env:"MODEL_PATH"`
	// ModelsURL is where `segbridge models install` downloads published
	// models from: <ModelsURL>/<model>/<file>, over HTTP(S) or from a local
	// folder. Default: brainchop's models as their authors publish them, at
	// the commit whose files models/brainchop/SHA256SUMS pins.
	ModelsURL string `env:"SEGBRIDGE_MODELS_URL" envDefault:"https://raw.githubusercontent.com/neuroneural/brainchop/4c87885f3a2a8835e260d521dcec922b58d91d41/public/models" doc:"brainchop's published models"`
	// ModelFiles are folders (colon-separated) searched for a manifest's
	// relative file and colormap when they are not beside the manifest.
	ModelFiles []string `env:"SEGBRIDGE_MODEL_FILES" envSeparator:":"`
	// Model names the model used when a trigger names none; empty:
	// automatic triggers run every model whose rules accept the series.
	Model string `env:"SEGBRIDGE_MODEL"`
	// Device is cpu or cuda.
	Device string `env:"DEVICE" envDefault:"cpu"`
	// Threshold overrides a sigmoid model's threshold (0 < t < 1); 0 keeps
	// the manifest's.
	Threshold float64 `env:"THRESHOLD"`
	// ORTLibrary is the ONNX Runtime shared library; empty:
	// .deps/onnxruntime/libonnxruntime.so.1 when present.
	ORTLibrary string `env:"SEGBRIDGE_ORT_LIB"`
	// IntraOpThreads is the threads of one inference; 0: ONNX Runtime's choice.
	IntraOpThreads int `env:"SEGBRIDGE_ORT_THREADS" envDefault:"0"`

	// Workers is the number of in-process workers of serve (0: a bridge
	// without workers), and of jobs one `segbridge worker` runs at once.
	Workers int `env:"SEGBRIDGE_WORKERS" envDefault:"1"`
	// DownloadConcurrency is how many instances a worker downloads at once.
	DownloadConcurrency int `env:"SEGBRIDGE_DOWNLOAD_CONCURRENCY" envDefault:"8"`
	// MaxVoxels (512x512x2048) and MaxBytes (2 GiB: 4 bytes per voxel)
	// bound the series a worker accepts: its voxels, the bytes of its DICOM
	// files and of its float32 volume. A larger one fails with the reason.
	MaxVoxels int64 `env:"SEGBRIDGE_MAX_VOXELS" envDefault:"536870912" doc:"512×512×2048"`
	MaxBytes  int64 `env:"SEGBRIDGE_MAX_BYTES" envDefault:"2147483648" doc:"2 GiB"`
	// AckWait is a worker's lease on a job, renewed by heartbeats.
	AckWait time.Duration `env:"SEGBRIDGE_ACK_WAIT" envDefault:"60s"`
	// MaxAttempts is how many deliveries a job gets.
	MaxAttempts int `env:"SEGBRIDGE_MAX_ATTEMPTS" envDefault:"5"`
	// Modalities are the modalities automatic triggers may queue.
	Modalities []string `env:"SEGBRIDGE_MODALITIES" envDefault:"MR" envSeparator:","`
	// Outputs are what a worker writes for a job: seg (always), sr (the
	// TID 1500 volumes report) and preview (the burned-in preview series).
	Outputs []string `env:"SEGBRIDGE_OUTPUTS" envDefault:"seg,sr" envSeparator:","`
	// NotifyURL receives a signed POST (NotifySecret) when a job ends.
	NotifyURL string `env:"SEGBRIDGE_NOTIFY_URL"`

	// LogLevel is debug, info, warn or error; LogFormat json or console
	// (empty: console on a terminal, else json).
	LogLevel  string `env:"SEGBRIDGE_LOG_LEVEL" envDefault:"info"`
	LogFormat string `env:"SEGBRIDGE_LOG_FORMAT"`

	// Secrets, each from its variable or from the file its _FILE twin names
	// (SecretVars).

	// OrthancPassword (ORTHANC_PASSWORD) goes with OrthancUser.
	OrthancPassword string
	// WebhookToken (SEGBRIDGE_WEBHOOK_TOKEN) is the bearer token Orthanc's
	// Lua script sends. Required by serve: at least 16 characters,
	// MinNetworkTokenLen when Listen is not loopback.
	WebhookToken string
	// APIToken (SEGBRIDGE_API_TOKEN) protects the manual trigger and status
	// API. Optional on a loopback listener, required on any other, with at
	// least MinNetworkTokenLen characters.
	APIToken string
	// NATSToken (SEGBRIDGE_NATS_TOKEN) is what remote workers present to the
	// embedded listener, or what connects to an external server.
	NATSToken string
	// NotifySecret (SEGBRIDGE_NOTIFY_SECRET) signs the notifications to
	// NotifyURL (HMAC-SHA256); required with it, at least
	// MinNetworkTokenLen characters.
	NotifySecret string

	// DefaultModelsDir is where `segbridge models install` puts models when
	// SEGBRIDGE_MODELS_DIR is not set, and where serve, worker and segment
	// look for them when neither it nor MODEL_PATH is:
	// $XDG_DATA_HOME/segbridge/models, or ~/.local/share/segbridge/models;
	// empty when neither XDG_DATA_HOME nor HOME is set.
	DefaultModelsDir string

	// Warnings are what FromEnv found worth fixing that does not stop
	// segbridge, e.g. a secret file others can read. main logs them; they
	// name variables and files, never a secret.
	Warnings []string
}

// SecretVars are the variables read as secrets, each also from a file
// (NAME_FILE).
var SecretVars = []string{"ORTHANC_PASSWORD", "SEGBRIDGE_WEBHOOK_TOKEN", "SEGBRIDGE_API_TOKEN", "SEGBRIDGE_NATS_TOKEN", "SEGBRIDGE_NOTIFY_SECRET"}

// LatestChange, as a ChangeNumber, means Orthanc's newest change.
const LatestChange ChangeNumber = -1

// ChangeNumber is a position in Orthanc's /changes feed, or LatestChange.
type ChangeNumber int64

// UnmarshalText reads "latest" or a change number >= 0.
func (c *ChangeNumber) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "latest" {
		*c = LatestChange
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not \"latest\" or a change number >= 0", s)
	}
	*c = ChangeNumber(n)
	return nil
}

// MinNetworkTokenLen is the shortest token accepted on a listener beyond
// loopback: 32 characters, what `openssl rand -hex 16` gives. A shorter one
// could be a word or a name someone picked, and guessing it opens the queue
// or the API to the network.
const MinNetworkTokenLen = 32

// FromEnv reads the configuration from getenv (os.Getenv in main). Its
// errors name the variable at fault; it reports them all at once.
func FromEnv(getenv func(string) string) (*Config, error) {
	c := &Config{}
	environ := map[string]string{}
	fields := reflect.TypeOf(*c)
	varOf := map[string]string{} // field name -> variable
	for i := range fields.NumField() {
		f := fields.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			continue
		}
		varOf[f.Name] = name
		if v := getenv(name); v != "" {
			environ[name] = v
		}
	}
	durations := reflect.TypeOf(time.Duration(0))
	err := env.ParseWithOptions(c, env.Options{
		Environment: environ,
		FuncMap: map[reflect.Type]env.ParserFunc{
			// "off" is a duration of 0 (a feature switched off).
			durations: func(v string) (any, error) {
				if strings.TrimSpace(v) == "off" {
					return time.Duration(0), nil
				}
				return time.ParseDuration(strings.TrimSpace(v))
			},
		},
	})
	var errs []error
	if err != nil {
		var agg env.AggregateError
		if errors.As(err, &agg) {
			for _, e := range agg.Errors {
				var pe env.ParseError
				if errors.As(e, &pe) {
					errs = append(errs, fmt.Errorf("%s: %q: %v", varOf[pe.Name], environ[varOf[pe.Name]], errors.Unwrap(pe.Err)))
					continue
				}
				errs = append(errs, e)
			}
		} else {
			errs = append(errs, err)
		}
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
	secret("SEGBRIDGE_NOTIFY_SECRET", &c.NotifySecret)

	if c.OrthancPublicURL == "" {
		c.OrthancPublicURL = c.OrthancURL
	}
	c.Device = strings.ToLower(strings.TrimSpace(c.Device))
	c.Modalities = normaliseList(c.Modalities)
	c.ModelFiles = slices.DeleteFunc(c.ModelFiles, func(s string) bool { return s == "" })
	c.DefaultModelsDir = defaultModelsDir(getenv)
	if c.ORTLibrary == "" {
		if _, err := os.Stat(".deps/onnxruntime/libonnxruntime.so.1"); err == nil {
			c.ORTLibrary = ".deps/onnxruntime/libonnxruntime.so.1"
		}
	}
	errs = append(errs, c.validate(environ)...)
	return c, errors.Join(errs...)
}

// validate checks the bounds of what was read; set are the variables given.
func (c *Config) validate(set map[string]string) []error {
	var errs []error
	atLeast := func(name string, v, min int) {
		if v < min {
			errs = append(errs, fmt.Errorf("%s: %q is not a whole number >= %d", name, set[name], min))
		}
	}
	atLeast("SEGBRIDGE_WORKERS", c.Workers, 0)
	atLeast("SEGBRIDGE_DOWNLOAD_CONCURRENCY", c.DownloadConcurrency, 1)
	atLeast("SEGBRIDGE_MAX_VOXELS", int(min(c.MaxVoxels, 1<<40)), 1)
	atLeast("SEGBRIDGE_MAX_BYTES", int(min(c.MaxBytes, 1<<40)), 1)
	atLeast("SEGBRIDGE_MAX_ATTEMPTS", c.MaxAttempts, 1)
	atLeast("SEGBRIDGE_ORT_THREADS", c.IntraOpThreads, 0)
	longer := func(name string, d, min time.Duration, zeroOK bool) {
		if d < min && !(zeroOK && d == 0) {
			errs = append(errs, fmt.Errorf("%s: %q is not a duration of at least %s (e.g. 5s)", name, set[name], min))
		}
	}
	longer("SEGBRIDGE_ACK_WAIT", c.AckWait, time.Second, false)
	longer("SEGBRIDGE_RETRY_DELAY", c.RetryDelay, 100*time.Millisecond, false)
	longer("SEGBRIDGE_DJANGO_WAIT", c.DjangoWait, 0, true)
	longer("SEGBRIDGE_RECONCILE_INTERVAL", c.ReconcileInterval, 100*time.Millisecond, true)
	if _, ok := set["THRESHOLD"]; ok && (c.Threshold <= 0 || c.Threshold >= 1) {
		errs = append(errs, fmt.Errorf("THRESHOLD: %q is not a number between 0 and 1", set["THRESHOLD"]))
	}
	if c.Device != "cpu" && c.Device != "cuda" {
		errs = append(errs, fmt.Errorf("DEVICE: %q is not cpu or cuda", c.Device))
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		errs = append(errs, errors.New("SEGBRIDGE_NATS_TLS_CERT and SEGBRIDGE_NATS_TLS_KEY must be set together"))
	}
	if len(c.Modalities) == 0 {
		errs = append(errs, errors.New("SEGBRIDGE_MODALITIES: name at least one modality (e.g. MR)"))
	}
	errs = append(errs, c.validateNotify()...)
	return errs
}

// validateNotify checks the notification settings: an http(s) URL with a
// host, and with it a secret long enough to sign with.
func (c *Config) validateNotify() []error {
	if c.NotifyURL == "" {
		if c.NotifySecret != "" {
			return []error{errors.New("SEGBRIDGE_NOTIFY_SECRET is set but SEGBRIDGE_NOTIFY_URL is not")}
		}
		return nil
	}
	var errs []error
	u, err := url.Parse(c.NotifyURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		errs = append(errs, fmt.Errorf("SEGBRIDGE_NOTIFY_URL: %q is not an http(s) URL without credentials", c.NotifyURL))
	}
	switch n := utf8.RuneCountInString(c.NotifySecret); {
	case n == 0:
		errs = append(errs, errors.New("SEGBRIDGE_NOTIFY_URL needs SEGBRIDGE_NOTIFY_SECRET to sign the notifications (make one with: openssl rand -hex 32)"))
	case n < MinNetworkTokenLen:
		errs = append(errs, fmt.Errorf("SEGBRIDGE_NOTIFY_SECRET has %d characters: it must have at least %d (make one with: openssl rand -hex 32)", n, MinNetworkTokenLen))
	}
	return errs
}

// normaliseList upper-cases a list and splits items that hold spaces.
func normaliseList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Fields(s) {
			out = append(out, strings.ToUpper(p))
		}
	}
	return out
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

// defaultModelsDir is the XDG data folder's segbridge/models.
func defaultModelsDir(getenv func(string) string) string {
	if d := getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "segbridge", "models")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "share", "segbridge", "models")
	}
	return ""
}

// ModelsFolder is the folder of model manifests workers load: the one
// SEGBRIDGE_MODELS_DIR names, else (without MODEL_PATH) DefaultModelsDir
// when it exists, else "".
func (c *Config) ModelsFolder() string {
	if c.ModelsDir != "" || c.ModelPath != "" {
		return c.ModelsDir
	}
	if fi, err := os.Stat(c.DefaultModelsDir); c.DefaultModelsDir != "" && err == nil && fi.IsDir() {
		return c.DefaultModelsDir
	}
	return ""
}

// NoModelsHint says how to get models when none is configured or installed.
func (c *Config) NoModelsHint() string {
	where := "the default model folder"
	if c.DefaultModelsDir != "" {
		where = c.DefaultModelsDir
	}
	return fmt.Sprintf("no models: install the pretrained ones with `segbridge models install brainchop` (into %s), or set SEGBRIDGE_MODELS_DIR (a folder of model manifests) or MODEL_PATH (one manifest)", where)
}

// ValidateWorker checks what running workers needs.
func (c *Config) ValidateWorker() error {
	var errs []error
	if c.ModelsFolder() == "" && c.ModelPath == "" {
		errs = append(errs, errors.New(c.NoModelsHint()))
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
	if fi, err := os.Stat(f); err == nil && fi.Mode().Perm()&0o044 != 0 && !systemdCredential(getenv, f) {
		warning = fmt.Sprintf("%s_FILE %s is readable by its group or others (mode %04o): chmod 600 it", name, f, fi.Mode().Perm())
	}
	return strings.TrimSpace(string(b)), warning, nil
}

// systemdCredential reports whether path is one of the credentials systemd
// handed this service (LoadCredential=, in $CREDENTIALS_DIRECTORY). systemd
// lets only the service's user read them, through an access control list
// whose mask shows in the group bits of the mode: they look group-readable
// and are not.
func systemdCredential(getenv func(string) string, path string) bool {
	dir := getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}
