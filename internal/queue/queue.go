// Package queue owns a segmentation job's life. Jobs travel as messages of a
// NATS JetStream stream used as a work queue (one message per job generation,
// deduplicated by message id); each job's status lives in a JetStream KV
// bucket. A status changes only through the named transitions in
// transitions.go — enqueue, take, progress, complete, fail, retry later, hand
// back, cancel, found in Orthanc, give up — each checking the state it starts
// from. Workers in other processes reach the same transitions through the
// bridge (rpc.go), never by writing statuses themselves. By default the queue
// embeds a NATS server with file storage, so one process is a complete system;
// given a URL it uses an external NATS server or cluster instead.
package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Names of the JetStream objects and subjects the queue uses.
const (
	StreamName   = "SEGBRIDGE_JOBS"
	Subject      = "segbridge.jobs"
	StatusBucket = "segbridge_status"
	ConsumerName = "segbridge-workers"
	// CursorBucket holds small persistent positions, such as the
	// reconciler's place in Orthanc's /changes feed.
	CursorBucket = "segbridge_cursors"
	// RPCSubject prefixes the requests remote workers send to the bridge
	// (see rpc.go).
	RPCSubject = "segbridge.rpc"
	// WorkerInboxPrefix and BridgeInboxPrefix keep the two kinds of client's
	// replies apart: a worker may subscribe only under its own prefix, so it
	// cannot read the bridge's answers.
	WorkerInboxPrefix = "_SBW"
	BridgeInboxPrefix = "_SBB"
)

// Config configures the queue.
type Config struct {
	// URL of an external NATS server ("nats://host:4222"). Empty: embed one.
	URL string
	// Token authenticates to the NATS server (external), or is what remote
	// workers must present to the embedded server's TCP listener; they get
	// worker permissions only (see WorkerPermissions). The bridge's own
	// in-process connection uses a random token of its own.
	Token string
	// CredsFile is a NATS credentials file for an external server.
	CredsFile string
	// NKeySeedFile is an NKey seed file for an external server.
	NKeySeedFile string
	// TLSCAFile, TLSCertFile and TLSKeyFile are PEM files. Connecting to a
	// server (external, or a worker to the bridge's listener): the CA that
	// signed the server's certificate, and an optional client certificate
	// and key. On the embedded server's listener: its certificate and key,
	// and, with TLSCAFile, the CA client certificates must be signed by.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string

	// DataDir is where the embedded server keeps its JetStream files.
	// Required when URL is empty.
	DataDir string
	// Listen, when set (e.g. "127.0.0.1:4222"), opens the embedded server's
	// TCP listener for remote `segbridge worker` processes. Empty: in-process
	// connections only. A listener needs Token; on a non-loopback address it
	// needs TLS (TLSCertFile, TLSKeyFile) unless AllowPlaintext is set.
	Listen string
	// AllowPlaintext allows a non-loopback listener without TLS (behind a
	// VPN or TLS-terminating tunnel). Default false.
	AllowPlaintext bool

	// AckWait is how long a worker holds a job without a heartbeat before it
	// is redelivered. Default 60 s.
	AckWait time.Duration
	// MaxDeliver is how many deliveries a job gets before it fails. Default 5.
	MaxDeliver int
	// DuplicateWindow is how long JetStream remembers message ids. Default 10 min.
	DuplicateWindow time.Duration
	// StatusBytes caps the status bucket's size on disk. Default 1 GiB,
	// about a million jobs; when full, new jobs are refused with an error.
	StatusBytes int64
	// Replicas is how many servers of a JetStream cluster keep the job
	// stream and the buckets (1, 3 or 5). Default 1; the embedded server is
	// a single server and takes only 1. With 3, the queue survives the loss
	// of any one server.
	Replicas int
	// Name names this client to NATS.
	Name string
}

// Size limits of the buckets: a status is a few hundred bytes, a cursor a
// number; anything far larger is a bug or an attack.
const (
	maxStatusValue   = 64 << 10
	maxCursorValue   = 4 << 10
	cursorBucketSize = 64 << 20
)

func (c Config) withDefaults() Config {
	if c.AckWait == 0 {
		c.AckWait = 60 * time.Second
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 5
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 10 * time.Minute
	}
	if c.StatusBytes == 0 {
		c.StatusBytes = 1 << 30
	}
	if c.Name == "" {
		c.Name = "segbridge"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

func (c Config) validate(worker bool) error {
	var errs []error
	if c.URL == "" && worker {
		errs = append(errs, errors.New("queue: a worker needs SEGBRIDGE_NATS_URL"))
	}
	if c.URL == "" && !worker && c.DataDir == "" {
		errs = append(errs, errors.New("queue: DataDir is required for the embedded NATS server"))
	}
	if c.Listen != "" && c.URL == "" {
		if c.Token == "" {
			errs = append(errs, errors.New("queue: a NATS listener (SEGBRIDGE_NATS_LISTEN) needs SEGBRIDGE_NATS_TOKEN"))
		}
		host, _, err := net.SplitHostPort(c.Listen)
		if err != nil {
			errs = append(errs, fmt.Errorf("queue: SEGBRIDGE_NATS_LISTEN %q: %w", c.Listen, err))
		} else if !isLoopbackHost(host) && c.TLSCertFile == "" && !c.AllowPlaintext {
			errs = append(errs, fmt.Errorf("queue: SEGBRIDGE_NATS_LISTEN %q is not loopback: set SEGBRIDGE_NATS_TLS_CERT and SEGBRIDGE_NATS_TLS_KEY "+
				"(or SEGBRIDGE_NATS_ALLOW_PLAINTEXT=true behind a tunnel you trust)", c.Listen))
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("queue: SEGBRIDGE_NATS_TLS_CERT and SEGBRIDGE_NATS_TLS_KEY go together"))
	}
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		errs = append(errs, fmt.Errorf("queue: SEGBRIDGE_NATS_REPLICAS %d: want 1 to 5 (3 or 5 in a cluster)", c.Replicas))
	case c.Replicas > 1 && c.URL == "" && !worker:
		errs = append(errs, fmt.Errorf("queue: SEGBRIDGE_NATS_REPLICAS %d needs a NATS cluster (SEGBRIDGE_NATS_URL): the embedded server is one server", c.Replicas))
	}
	if c.AckWait < 0 || c.MaxDeliver < 1 {
		errs = append(errs, errors.New("queue: AckWait must be positive and MaxDeliver at least 1"))
	}
	return errors.Join(errs...)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Errors of the queue. Transition errors are in transitions.go.
var (
	// ErrNotFound is returned for a job id the queue does not know.
	ErrNotFound = errors.New("job not found")
	// ErrCorrupt is wrapped by the error of a status record that cannot be
	// decoded; listing skips such records.
	ErrCorrupt = errors.New("unreadable job status")
)

// Queue is the job queue and status store, as the bridge opens it: with the
// rights to create the stream and buckets and to change every status.
type Queue struct {
	cfg    Config
	logger zerolog.Logger
	ns     *server.Server
	// bridgeToken authenticates this process's own connection to the
	// embedded server.
	bridgeToken string
	nc          *nats.Conn
	js          jetstream.JetStream
	stream      jetstream.Stream
	kv          jetstream.KeyValue
	// statusStream is the stream behind kv, read in order by List.
	statusStream jetstream.Stream
	cursor       jetstream.KeyValue
	cons         jetstream.Consumer
	now          func() time.Time
	// once is the marker bucket of ClaimOnce (once.go).
	once onceBucket

	closeOnce sync.Once
	// listRead counts the status messages List read, for tests that check
	// a page does not read the whole bucket.
	listRead atomic.Uint64
	// onWrite is called with each status this process writes (OnWrite).
	onWrite atomic.Pointer[func(*Status)]
	// afterPublish, set by tests, runs between Enqueue's publish and its
	// status write.
	afterPublish func()
}

// Open starts the embedded server (when cfg.URL is empty), connects, and
// creates or updates the stream, consumer and buckets.
func Open(ctx context.Context, logger zerolog.Logger, cfg Config) (*Queue, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, logger: logger.With().Str("component", "queue").Logger(), now: time.Now}
	opts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
		nats.CustomInboxPrefix(BridgeInboxPrefix)}
	url := cfg.URL
	if url == "" {
		ns, err := q.startEmbedded()
		if err != nil {
			return nil, err
		}
		q.ns = ns
		url = ns.ClientURL()
		opts = append(opts, nats.InProcessServer(ns), nats.Token(q.bridgeToken))
		if cfg.Listen != "" && cfg.TLSCertFile != "" {
			// The in-process connection is a pipe inside this process, never
			// the network; the listener's TLS is for remote workers, and
			// there is nothing here to verify the certificate against.
			opts = append(opts, nats.Secure(&tls.Config{InsecureSkipVerify: true})) //nolint:gosec // in-process pipe
		}
	} else {
		o, err := clientAuthOptions(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		q.shutdownServer()
		return nil, fmt.Errorf("queue: connect to NATS: %w", err)
	}
	q.nc = nc
	if err := q.setup(ctx); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// clientAuthOptions are the TLS and credential options of a connection to an
// external server (or of a worker to the bridge's listener).
func clientAuthOptions(cfg Config) ([]nats.Option, error) {
	var opts []nats.Option
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if cfg.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("queue: nkey seed: %w", err)
		}
		opts = append(opts, o)
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	return opts, nil
}

func (q *Queue) startEmbedded() (*server.Server, error) {
	dir := filepath.Join(q.cfg.DataDir, "jetstream")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: data dir: %w", err)
	}
	o := &server.Options{
		ServerName: "segbridge",
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
		DontListen: q.cfg.Listen == "",
		// Bounded message and pending sizes: a job message is a few hundred
		// bytes, an RPC request a few KiB.
		MaxPayload: 1 << 20,
	}
	q.bridgeToken = randomToken()
	o.CustomClientAuthentication = &tokenAuth{bridge: q.bridgeToken, worker: q.cfg.Token}
	if q.cfg.Listen != "" {
		host, port, err := net.SplitHostPort(q.cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("queue: listen %q: %w", q.cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("queue: listen %q: bad port", q.cfg.Listen)
		}
		o.Host, o.Port = host, p
		if q.cfg.TLSCertFile != "" {
			tc, err := serverTLS(q.cfg)
			if err != nil {
				return nil, err
			}
			o.TLSConfig, o.TLS, o.TLSTimeout = tc, true, 5
			o.TLSVerify = q.cfg.TLSCAFile != ""
		}
	}
	ns, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("queue: embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("queue: embedded NATS server did not start within 15 s")
	}
	return ns, nil
}

// serverTLS is the embedded listener's TLS configuration: its certificate,
// and when a CA is given, client certificates required and checked.
func serverTLS(cfg Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("queue: SEGBRIDGE_NATS_TLS_CERT/KEY: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("queue: SEGBRIDGE_NATS_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("queue: SEGBRIDGE_NATS_TLS_CA %s holds no PEM certificate", cfg.TLSCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

func (q *Queue) setup(ctx context.Context) error {
	js, err := jetstream.New(q.nc)
	if err != nil {
		return fmt.Errorf("queue: jetstream: %w", err)
	}
	q.js = js
	storage := jetstream.FileStorage
	q.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "segbridge segmentation jobs",
		Subjects:    []string{Subject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     storage,
		Duplicates:  q.cfg.DuplicateWindow,
		MaxMsgSize:  maxStatusValue,
		Replicas:    q.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", StreamName, err)
	}
	q.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       StatusBucket,
		Description:  "segbridge job status",
		History:      1,
		Storage:      storage,
		MaxValueSize: maxStatusValue,
		MaxBytes:     q.cfg.StatusBytes,
		Replicas:     q.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: status bucket: %w", err)
	}
	if q.statusStream, err = js.Stream(ctx, statusStreamName); err != nil {
		return fmt.Errorf("queue: status bucket's stream: %w", err)
	}
	q.cursor, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       CursorBucket,
		Description:  "segbridge cursors (reconciler position in Orthanc's changes)",
		History:      1,
		Storage:      storage,
		MaxValueSize: maxCursorValue,
		MaxBytes:     cursorBucketSize,
		Replicas:     q.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: cursor bucket: %w", err)
	}
	q.cons, err = q.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.cfg.AckWait,
		MaxDeliver:    q.cfg.MaxDeliver,
		MaxAckPending: 1024,
	})
	if err != nil {
		return fmt.Errorf("queue: consumer: %w", err)
	}
	return nil
}

// ClientURL is the embedded server's URL for remote workers ("" when it has
// no listener or the queue is external).
func (q *Queue) ClientURL() string {
	if q.ns == nil || q.cfg.Listen == "" {
		return ""
	}
	return q.ns.ClientURL()
}

// AckWait is a worker's lease on a job.
func (q *Queue) AckWait() time.Duration { return q.cfg.AckWait }

// MaxDeliver is how many deliveries a job gets.
func (q *Queue) MaxDeliver() int { return q.cfg.MaxDeliver }

// Close disconnects and stops the embedded server. Safe to call twice.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		if q.nc != nil {
			drainAndClose(q.nc)
		}
		q.shutdownServer()
	})
	return nil
}

// drainAndClose lets in-flight messages finish, for at most 5 s.
func drainAndClose(nc *nats.Conn) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		nc.Close()
	}
}

func (q *Queue) shutdownServer() {
	if q.ns != nil {
		q.ns.Shutdown()
		q.ns.WaitForShutdown()
	}
}

// Ready reports whether the queue can take jobs now.
func (q *Queue) Ready(ctx context.Context) error {
	if q.nc == nil || !q.nc.IsConnected() {
		return errors.New("not connected to NATS")
	}
	if _, err := q.stream.Info(ctx); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	return nil
}

// get reads one status and its KV revision.
func (q *Queue) get(ctx context.Context, id string) (*Status, uint64, error) {
	if !validJobID(id) {
		return nil, 0, fmt.Errorf("%q: %w", id, ErrNotFound)
	}
	e, err := q.kv.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
			return nil, 0, fmt.Errorf("%s: %w", id, ErrNotFound)
		}
		return nil, 0, fmt.Errorf("queue: read status %s: %w", id, err)
	}
	st, err := decodeStatus(id, e.Value())
	if err != nil {
		return nil, e.Revision(), err
	}
	return st, e.Revision(), nil
}

// decodeStatus reads a status record, refusing one that does not describe
// the job under its key.
func decodeStatus(id string, b []byte) (*Status, error) {
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", id, ErrCorrupt, err)
	}
	if st.ID != id || !st.State.Valid() {
		return nil, fmt.Errorf("%s: %w: record names job %q in state %q", id, ErrCorrupt, st.ID, st.State)
	}
	return &st, nil
}

// Status returns one job's status.
func (q *Queue) Status(ctx context.Context, id string) (*Status, error) {
	st, _, err := q.get(ctx, id)
	return st, err
}

// Depth is the number of messages waiting in the work queue.
func (q *Queue) Depth(ctx context.Context) (uint64, error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}
