// Package queue is segbridge's durable work queue: a NATS JetStream stream
// used as a work queue (one message per job generation, deduplicated by
// message id) and a JetStream KV bucket holding each job's status. By default
// it embeds a NATS server with file storage, so one process is a complete
// system; given a URL it uses an external NATS server or cluster instead.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Names of the JetStream objects the queue uses.
const (
	StreamName   = "SEGBRIDGE_JOBS"
	Subject      = "segbridge.jobs"
	StatusBucket = "segbridge_status"
	ConsumerName = "segbridge-workers"
	// CursorBucket holds small persistent positions, such as the
	// reconciler's place in Orthanc's /changes feed.
	CursorBucket = "segbridge_cursors"
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
	// TLSCAFile, TLSCertFile and TLSKeyFile configure TLS to an external
	// server: the CA that signed its certificate, and an optional client
	// certificate and key.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// Bind makes Open look up the stream, consumer and status bucket instead
	// of creating or updating them, so a client with worker permissions can
	// open the queue. Workers set it; the bridge creates the objects.
	Bind bool

	// DataDir is where the embedded server keeps its JetStream files.
	// Required when URL is empty.
	DataDir string
	// Listen, when set (e.g. "127.0.0.1:4222"), opens the embedded server's
	// TCP listener for remote `segbridge worker` processes. Empty: in-process
	// connections only. A listener needs Token.
	Listen string

	// AckWait is how long a worker holds a job without a heartbeat before it
	// is redelivered. Default 60 s.
	AckWait time.Duration
	// MaxDeliver is how many deliveries a job gets before it fails. Default 5.
	MaxDeliver int
	// DuplicateWindow is how long JetStream remembers message ids. Default 10 min.
	DuplicateWindow time.Duration
	// Name names this client to NATS.
	Name string
}

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
	if c.Name == "" {
		c.Name = "segbridge"
	}
	return c
}

func (c Config) validate() error {
	if c.URL == "" && c.DataDir == "" {
		return errors.New("queue: DataDir is required for the embedded NATS server")
	}
	if c.Listen != "" && c.Token == "" {
		return errors.New("queue: a NATS listener (SEGBRIDGE_NATS_LISTEN) needs SEGBRIDGE_NATS_TOKEN")
	}
	if c.URL == "" && c.Bind {
		return errors.New("queue: a worker needs SEGBRIDGE_NATS_URL")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("queue: SEGBRIDGE_NATS_TLS_CERT and SEGBRIDGE_NATS_TLS_KEY go together")
	}
	return nil
}

// ErrNotFound is returned for a job id the queue does not know.
var ErrNotFound = errors.New("job not found")

// Queue is the job queue and status store.
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
	cursor      jetstream.KeyValue
	cons        jetstream.Consumer
	now         func() time.Time

	closeOnce sync.Once
}

// Open starts the embedded server (when cfg.URL is empty), connects, and
// makes sure the stream, consumer and status bucket exist.
func Open(ctx context.Context, logger zerolog.Logger, cfg Config) (*Queue, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, logger: logger.With().Str("component", "queue").Logger(), now: time.Now}
	var opts []nats.Option
	opts = append(opts, nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond))
	url := cfg.URL
	if url == "" {
		ns, err := q.startEmbedded()
		if err != nil {
			return nil, err
		}
		q.ns = ns
		url = ns.ClientURL()
		opts = append(opts, nats.InProcessServer(ns), nats.Token(q.bridgeToken))
	} else {
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
	}
	q.bridgeToken = randomToken()
	o.CustomClientAuthentication = &tokenAuth{bridge: q.bridgeToken, worker: q.cfg.Token}
	if q.cfg.Listen != "" {
		host, port, err := splitHostPort(q.cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("queue: listen %q: %w", q.cfg.Listen, err)
		}
		o.Host, o.Port = host, port
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

func (q *Queue) setup(ctx context.Context) error {
	js, err := jetstream.New(q.nc)
	if err != nil {
		return fmt.Errorf("queue: jetstream: %w", err)
	}
	q.js = js
	if q.cfg.Bind {
		return q.bind(ctx)
	}
	storage := jetstream.FileStorage
	q.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "segbridge segmentation jobs",
		Subjects:    []string{Subject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     storage,
		Duplicates:  q.cfg.DuplicateWindow,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", StreamName, err)
	}
	q.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      StatusBucket,
		Description: "segbridge job status",
		History:     1,
		Storage:     storage,
	})
	if err != nil {
		return fmt.Errorf("queue: status bucket: %w", err)
	}
	q.cursor, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      CursorBucket,
		Description: "segbridge cursors (reconciler position in Orthanc's changes)",
		History:     1,
		Storage:     storage,
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

// bind looks up the objects the bridge created, with worker permissions.
func (q *Queue) bind(ctx context.Context) error {
	var err error
	if q.stream, err = q.js.Stream(ctx, StreamName); err != nil {
		return fmt.Errorf("queue: stream %s (is the bridge running?): %w", StreamName, err)
	}
	if q.kv, err = q.js.KeyValue(ctx, StatusBucket); err != nil {
		return fmt.Errorf("queue: status bucket: %w", err)
	}
	if q.cons, err = q.stream.Consumer(ctx, ConsumerName); err != nil {
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

// Close disconnects and stops the embedded server. Safe to call twice.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		if q.nc != nil {
			_ = q.nc.Drain()
			deadline := time.Now().Add(5 * time.Second)
			for !q.nc.IsClosed() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			q.nc.Close()
		}
		q.shutdownServer()
	})
	return nil
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

// Enqueue queues job unless the same job is already queued or running, or is
// done (and force is false). It returns the job's status and whether a new
// generation was queued. Concurrent calls for the same job id queue it once:
// the publish is deduplicated by message id and the status by KV revision.
func (q *Queue) Enqueue(ctx context.Context, job Job, force bool) (*Status, bool, error) {
	if job.ID == "" {
		job.ID = JobID(job.SeriesID, job.Model, job.ModelVersion)
	}
	for try := 0; try < 20; try++ {
		// Most triggers are for series never seen: the first try assumes
		// so and skips the read (publish + create: two round trips, not
		// three). If the job exists the create fails and the loop reads it;
		// the message just published is then a duplicate the JetStream
		// window drops, or a stale generation the worker skips.
		var cur *Status
		var rev uint64
		var err error
		if try > 0 || force {
			cur, rev, err = q.get(ctx, job.ID)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, false, err
		}
		if cur != nil {
			switch {
			case cur.State == StateQueued || cur.State == StateRunning:
				return cur, false, nil
			case cur.State == StateDone && !force:
				return cur, false, nil
			}
		}
		job.Force = force
		job.Generation = 1
		if cur != nil {
			job.Generation = cur.Generation + 1
		}
		if job.RequestedAt.IsZero() {
			job.RequestedAt = q.now().UTC()
		}
		st := &Status{Job: job, State: StateQueued, UpdatedAt: q.now().UTC()}
		// Publish first: if this process dies before the status is written,
		// the worker still gets the job and writes the status itself.
		if err := q.publish(ctx, job); err != nil {
			return nil, false, err
		}
		b, _ := json.Marshal(st)
		if cur == nil {
			_, err = q.kv.Create(ctx, job.ID, b)
		} else {
			_, err = q.kv.Update(ctx, job.ID, b, rev)
		}
		if err != nil {
			if isConflict(err) {
				continue // someone else moved it; look again
			}
			return nil, false, fmt.Errorf("queue: write status %s: %w", job.ID, err)
		}
		return st, true, nil
	}
	return nil, false, fmt.Errorf("queue: status of %s keeps changing under us", job.ID)
}

func (q *Queue) publish(ctx context.Context, job Job) error {
	b, err := json.Marshal(job)
	if err != nil {
		return err
	}
	msgID := fmt.Sprintf("%s#%d", job.ID, job.Generation)
	if _, err := q.js.Publish(ctx, Subject, b, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("queue: publish %s: %w", msgID, err)
	}
	return nil
}

func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return strings.Contains(err.Error(), "wrong last sequence")
}

func (q *Queue) get(ctx context.Context, id string) (*Status, uint64, error) {
	e, err := q.kv.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
			return nil, 0, fmt.Errorf("%s: %w", id, ErrNotFound)
		}
		return nil, 0, fmt.Errorf("queue: read status %s: %w", id, err)
	}
	var st Status
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, 0, fmt.Errorf("queue: decode status %s: %w", id, err)
	}
	return &st, e.Revision(), nil
}

// Status returns one job's status.
func (q *Queue) Status(ctx context.Context, id string) (*Status, error) {
	st, _, err := q.get(ctx, id)
	return st, err
}

// Update changes a job's status with fn under optimistic concurrency: fn may
// run more than once and must only change st. A job without a status (its
// bridge died between publish and write) starts from the zero status.
func (q *Queue) Update(ctx context.Context, id string, fn func(st *Status) error) (*Status, error) {
	for try := 0; try < 50; try++ {
		cur, rev, err := q.get(ctx, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if cur == nil {
			cur = &Status{}
			cur.ID = id
		}
		if err := fn(cur); err != nil {
			return cur, err
		}
		cur.UpdatedAt = q.now().UTC()
		b, _ := json.Marshal(cur)
		if rev == 0 {
			_, err = q.kv.Create(ctx, id, b)
		} else {
			_, err = q.kv.Update(ctx, id, b, rev)
		}
		if err == nil {
			return cur, nil
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("queue: write status %s: %w", id, err)
		}
	}
	return nil, fmt.Errorf("queue: status of %s keeps changing under us", id)
}

// ErrNotCancellable is returned when cancelling a job that is not queued.
var ErrNotCancellable = errors.New("only a queued job can be cancelled")

// Cancel marks a queued job cancelled; its message is skipped when delivered.
func (q *Queue) Cancel(ctx context.Context, id string) (*Status, error) {
	return q.Update(ctx, id, func(st *Status) error {
		if st.State == "" {
			return fmt.Errorf("%s: %w", id, ErrNotFound)
		}
		if st.State != StateQueued {
			return fmt.Errorf("job %s is %s: %w", id, st.State, ErrNotCancellable)
		}
		st.State = StateCancelled
		now := q.now().UTC()
		st.FinishedAt = &now
		return nil
	})
}

// SeriesStatus returns the status of every job for one Orthanc series.
func (q *Queue) SeriesStatus(ctx context.Context, seriesID string) ([]*Status, error) {
	return q.list(ctx, seriesID+".>", "", 0)
}

// List returns job statuses, newest first, optionally of one state, at most
// limit (0 = all).
func (q *Queue) List(ctx context.Context, state State, limit int) ([]*Status, error) {
	return q.list(ctx, ">", state, limit)
}

func (q *Queue) list(ctx context.Context, filter string, state State, limit int) ([]*Status, error) {
	lister, err := q.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("queue: list: %w", err)
	}
	var out []*Status
	for key := range lister.Keys() {
		st, _, err := q.get(ctx, key)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		if state != "" && st.State != state {
			continue
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UpdatedAt.After(out[j].UpdatedAt) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Depth is the number of messages waiting in the work queue.
func (q *Queue) Depth(ctx context.Context) (uint64, error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", 0, errors.New("want host:port")
	}
	var port int
	if _, err := fmt.Sscanf(s[i+1:], "%d", &port); err != nil {
		return "", 0, fmt.Errorf("port: %w", err)
	}
	return s[:i], port, nil
}
