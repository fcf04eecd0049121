package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Why an RPC: a worker on another machine holds credentials that may leak,
// so they must let it do no more than work. It may pull job messages, and
// everything else — taking a job, reporting progress, ending it, and the
// acknowledgements of its message — it asks of the bridge, which applies the
// same transitions as for its own workers after checking them: the message
// to take exists and names the job, the lease is the job's, and a result
// names a SEG that is really in Orthanc (ResultVerifier). A worker cannot
// write statuses, read the bridge's replies, or touch the buckets.

// rpcRequest is what a remote worker sends on RPCSubject.<op>.
type rpcRequest struct {
	Job      Job                `json:"job"`
	Worker   string             `json:"worker,omitempty"`
	Ack      string             `json:"ack,omitempty"`
	Token    string             `json:"token,omitempty"`
	Attempt  int                `json:"attempt,omitempty"`
	Stage    string             `json:"stage,omitempty"`
	Progress float64            `json:"progress,omitempty"`
	Result   *Result            `json:"result,omitempty"`
	Reason   string             `json:"reason,omitempty"`
	Delay    time.Duration      `json:"delay,omitempty"`
	Timings  map[string]float64 `json:"timings_ms,omitempty"`
}

// rpcResponse is the bridge's answer.
type rpcResponse struct {
	// Code names a transition error ("stale", "leased", "lease_lost",
	// "cancelled") or "error"; empty on success.
	Code    string    `json:"code,omitempty"`
	Error   string    `json:"error,omitempty"`
	Token   string    `json:"token,omitempty"`
	Until   time.Time `json:"until,omitempty"`
	Last    bool      `json:"last,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	Status  *Status   `json:"status,omitempty"`
}

var rpcCodes = []struct {
	code string
	err  error
}{
	{"stale", ErrStale}, {"leased", ErrLeased}, {"lease_lost", ErrLeaseLost}, {"cancelled", ErrCancelled}, {"conflict", ErrConflict},
}

func encodeRPCError(err error) rpcResponse {
	for _, c := range rpcCodes {
		if errors.Is(err, c.err) {
			return rpcResponse{Code: c.code, Error: err.Error()}
		}
	}
	var pe *permanentRPCError
	if errors.As(err, &pe) {
		return rpcResponse{Code: "refused", Error: err.Error()}
	}
	return rpcResponse{Code: "error", Error: err.Error()}
}

// RefusedError is a remote worker's request the bridge refused after
// checking it (a result that is not in Orthanc, a message that does not name
// the job): trying again does not help.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return "bridge refused: " + e.Msg }

type permanentRPCError struct{ err error }

func (e *permanentRPCError) Error() string { return e.err.Error() }
func (e *permanentRPCError) Unwrap() error { return e.err }

func refuse(format string, args ...any) error {
	return &permanentRPCError{fmt.Errorf(format, args...)}
}

func decodeRPCError(r rpcResponse) error {
	for _, c := range rpcCodes {
		if r.Code == c.code {
			return fmt.Errorf("%s: %w", strings.TrimSuffix(r.Error, ": "+c.err.Error()), c.err)
		}
	}
	if r.Code == "refused" {
		return &RefusedError{r.Error}
	}
	return errors.New(r.Error)
}

// ResultVerifier checks a remote worker's claimed result before its job is
// recorded done: the SEG must be in Orthanc, reference the job's series, and
// be made by the job's model version.
type ResultVerifier interface {
	VerifyResult(ctx context.Context, job Job, res Result) error
}

// ServeWorkers answers remote workers' requests until ctx ends. Several
// bridges on one NATS share the work (a queue group). verify may be nil only
// in tests.
func (q *Queue) ServeWorkers(ctx context.Context, verify ResultVerifier) error {
	logger := q.logger.With().Str("component", "worker-rpc").Logger()
	sub, err := q.nc.QueueSubscribe(RPCSubject+".*", "segbridge-bridges", func(m *nats.Msg) {
		op := strings.TrimPrefix(m.Subject, RPCSubject+".")
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp := q.serveRPC(rctx, logger, op, m.Data, verify)
		b, _ := json.Marshal(resp)
		if m.Reply != "" {
			_ = m.Respond(b)
		}
	})
	if err != nil {
		return fmt.Errorf("queue: serve workers: %w", err)
	}
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
	}()
	return nil
}

func (q *Queue) serveRPC(ctx context.Context, logger zerolog.Logger, op string, data []byte, verify ResultVerifier) (resp rpcResponse) {
	defer func() {
		if r := recover(); r != nil {
			logger.Error().Interface("panic", r).Str("op", op).Msg("worker request panicked")
			resp = rpcResponse{Code: "error", Error: "internal error"}
		}
	}()
	var req rpcRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return encodeRPCError(refuse("malformed request: %v", err))
	}
	if !validJobID(req.Job.ID) || req.Job.ID != JobID(req.Job.SeriesID, req.Job.Model, req.Job.ModelVersion) {
		return encodeRPCError(refuse("request names no valid job"))
	}
	if op == "take" {
		l, err := q.takeRemote(ctx, req)
		if err != nil {
			return encodeRPCError(err)
		}
		return rpcResponse{Token: l.token, Until: l.Until, Last: l.LastAttempt, Attempt: l.Attempt}
	}
	if req.Token == "" || req.Ack != "" && !validAck(req.Ack) {
		return encodeRPCError(refuse("request holds no lease"))
	}
	cur, err := q.leaseStatus(ctx, req)
	if err != nil {
		return encodeRPCError(err)
	}
	// The attempt count is the bridge's, not what the worker says.
	l := &Lease{Job: req.Job, Attempt: cur.Attempts, LastAttempt: cur.Attempts >= q.cfg.MaxDeliver, token: req.Token, ack: req.Ack}
	var st *Status
	switch op {
	case "progress":
		err = q.Progress(ctx, l, req.Stage, req.Progress)
		return rpcResult(nil, err, l)
	case "complete":
		if req.Result == nil {
			return encodeRPCError(refuse("complete without a result"))
		}
		// Only the lease holder's claim is worth checking in Orthanc.
		if cur.State != StateRunning || cur.LeaseHash != leaseHash(req.Token) {
			return encodeRPCError(owned("complete", cur, l))
		}
		if verify != nil {
			if err := verify.VerifyResult(ctx, req.Job, *req.Result); err != nil {
				logger.Warn().Err(err).Str("job", req.Job.ID).Msg("a worker's result did not check out")
				return encodeRPCError(refuse("result of %s: %v", req.Job.ID, err))
			}
		}
		st, err = q.Complete(ctx, l, *req.Result)
	case "fail":
		st, err = q.Fail(ctx, l, req.Reason, req.Timings)
	case "skip":
		st, err = q.Skip(ctx, l, req.Reason, req.Timings)
	case "retry":
		st, err = q.RetryLater(ctx, l, req.Delay, req.Reason, req.Timings)
	case "handback":
		st, err = q.HandBack(ctx, l, req.Reason)
	default:
		return encodeRPCError(refuse("unknown operation %q", op))
	}
	return rpcResult(st, err, l)
}

func rpcResult(st *Status, err error, l *Lease) rpcResponse {
	if err != nil {
		return encodeRPCError(err)
	}
	return rpcResponse{Status: st, Until: l.Until}
}

// leaseStatus returns the job's status after checking that the ack subject
// the worker sent is that of the job's running message. The lease itself is
// checked by the transition.
func (q *Queue) leaseStatus(ctx context.Context, req rpcRequest) (*Status, error) {
	if req.Ack == "" {
		return nil, refuse("request names no message")
	}
	seq, _, err := parseAck(req.Ack)
	if err != nil {
		return nil, refuse("%v", err)
	}
	st, err := q.Status(ctx, req.Job.ID)
	if err != nil {
		return nil, err
	}
	if st.Seq != seq {
		return nil, fmt.Errorf("message %d is not the job's: %w", seq, ErrLeaseLost)
	}
	return st, nil
}

// takeRemote checks that the message a worker wants to take exists and is
// the job it names, then takes it for the worker.
func (q *Queue) takeRemote(ctx context.Context, req rpcRequest) (*Lease, error) {
	if !validAck(req.Ack) {
		return nil, refuse("request names no job message")
	}
	seq, delivered, err := parseAck(req.Ack)
	if err != nil {
		return nil, refuse("%v", err)
	}
	raw, err := q.stream.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, fmt.Errorf("message %d is gone: %w", seq, ErrStale)
		}
		return nil, err
	}
	var job Job
	if err := json.Unmarshal(raw.Data, &job); err != nil || job.ID != req.Job.ID || job.Generation != req.Job.Generation {
		return nil, refuse("message %d is not job %s generation %d", seq, req.Job.ID, req.Job.Generation)
	}
	worker := req.Worker
	if len(worker) > 128 {
		worker = worker[:128]
	}
	return q.Take(ctx, &Delivery{Job: job, Attempt: delivered, Seq: seq, ack: req.Ack}, "remote:"+worker)
}

// validAck reports whether s is an ack subject of the job consumer.
func validAck(s string) bool {
	_, _, err := parseAck(s)
	return err == nil
}

// parseAck reads the stream sequence and delivery count out of a JetStream
// ack subject of the job consumer: $JS.ACK.<stream>.<consumer>.<delivered>.
// <stream seq>.<consumer seq>.<time>.<pending>, or the newer form with a
// domain and account hash after $JS.ACK.
func parseAck(s string) (seq uint64, delivered int, err error) {
	t := strings.Split(s, ".")
	if len(t) < 9 || t[0] != "$JS" || t[1] != "ACK" {
		return 0, 0, fmt.Errorf("%q is not a JetStream ack subject", s)
	}
	off := 2
	if len(t) >= 12 {
		off = 4 // $JS.ACK.<domain>.<account hash>.<stream>...
	}
	if t[off] != StreamName || t[off+1] != ConsumerName {
		return 0, 0, fmt.Errorf("ack subject %q is not of the job queue", s)
	}
	d, err1 := strconv.Atoi(t[off+2])
	n, err2 := strconv.ParseUint(t[off+3], 10, 64)
	if err1 != nil || err2 != nil || d < 1 || n < 1 {
		return 0, 0, fmt.Errorf("ack subject %q has no message sequence", s)
	}
	return n, d, nil
}

// Remote is the queue as a `segbridge worker` on another machine sees it: it
// pulls job messages and asks the bridge for every transition. It has the
// same methods a worker uses on *Queue.
type Remote struct {
	cfg    Config
	logger zerolog.Logger
	nc     *nats.Conn
	cons   jetstream.Consumer
	once   sync.Once
}

// OpenRemote connects to NATS with worker credentials and finds the job
// consumer the bridge created.
func OpenRemote(ctx context.Context, logger zerolog.Logger, cfg Config) (*Remote, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(true); err != nil {
		return nil, err
	}
	opts, err := clientAuthOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond),
		nats.CustomInboxPrefix(WorkerInboxPrefix))
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("queue: connect to NATS: %w", err)
	}
	r := &Remote{cfg: cfg, logger: logger.With().Str("component", "queue").Logger(), nc: nc}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("queue: jetstream: %w", err)
	}
	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("queue: stream %s (is the bridge running?): %w", StreamName, err)
	}
	if r.cons, err = stream.Consumer(ctx, ConsumerName); err != nil {
		nc.Close()
		return nil, fmt.Errorf("queue: consumer: %w", err)
	}
	return r, nil
}

// Close disconnects. Safe to call twice.
func (r *Remote) Close() error {
	r.once.Do(func() { drainAndClose(r.nc) })
	return nil
}

// Ready reports whether the connection is up.
func (r *Remote) Ready(context.Context) error {
	if !r.nc.IsConnected() {
		return errors.New("not connected to NATS")
	}
	return nil
}

// Next waits up to wait for a job message. An unreadable message is left to
// expire: only the bridge may drop messages.
func (r *Remote) Next(ctx context.Context, wait time.Duration) (*Delivery, error) {
	return nextDelivery(ctx, r.cons, wait)
}

func (r *Remote) call(ctx context.Context, op string, req rpcRequest) (rpcResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return rpcResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msg, err := r.nc.RequestWithContext(ctx, RPCSubject+"."+op, b)
	if err != nil {
		return rpcResponse{}, fmt.Errorf("ask the bridge to %s job %s: %w", op, req.Job.ID, err)
	}
	var resp rpcResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return rpcResponse{}, fmt.Errorf("bridge's answer to %s: %w", op, err)
	}
	if resp.Code != "" {
		return resp, decodeRPCError(resp)
	}
	return resp, nil
}

// Take asks the bridge to start the delivered job under a new lease.
func (r *Remote) Take(ctx context.Context, d *Delivery, worker string) (*Lease, error) {
	resp, err := r.call(ctx, "take", rpcRequest{Job: d.Job, Worker: worker, Ack: d.ack})
	if err != nil {
		return nil, err
	}
	return &Lease{Job: d.Job, Attempt: resp.Attempt, LastAttempt: resp.Last, Until: resp.Until, token: resp.Token, ack: d.ack}, nil
}

func (r *Remote) leaseRequest(l *Lease) rpcRequest {
	return rpcRequest{Job: l.Job, Token: l.token, Ack: l.ack, Attempt: l.Attempt}
}

// Progress reports progress and renews the lease.
func (r *Remote) Progress(ctx context.Context, l *Lease, stage string, progress float64) error {
	req := r.leaseRequest(l)
	req.Stage, req.Progress = stage, progress
	resp, err := r.call(ctx, "progress", req)
	if err == nil {
		l.Until = resp.Until
	}
	return err
}

// Complete ends the job as done; the bridge checks the result in Orthanc.
func (r *Remote) Complete(ctx context.Context, l *Lease, res Result) (*Status, error) {
	req := r.leaseRequest(l)
	req.Result = &res
	resp, err := r.call(ctx, "complete", req)
	return resp.Status, err
}

// Fail ends the job as failed.
func (r *Remote) Fail(ctx context.Context, l *Lease, reason string, timings map[string]float64) (*Status, error) {
	req := r.leaseRequest(l)
	req.Reason, req.Timings = reason, timings
	resp, err := r.call(ctx, "fail", req)
	return resp.Status, err
}

// Skip ends the job as skipped.
func (r *Remote) Skip(ctx context.Context, l *Lease, reason string, timings map[string]float64) (*Status, error) {
	req := r.leaseRequest(l)
	req.Reason, req.Timings = reason, timings
	resp, err := r.call(ctx, "skip", req)
	return resp.Status, err
}

// RetryLater returns the job to the queue for a later try.
func (r *Remote) RetryLater(ctx context.Context, l *Lease, delay time.Duration, reason string, timings map[string]float64) (*Status, error) {
	req := r.leaseRequest(l)
	req.Delay, req.Reason, req.Timings = delay, reason, timings
	resp, err := r.call(ctx, "retry", req)
	return resp.Status, err
}

// HandBack returns the job to the queue at once.
func (r *Remote) HandBack(ctx context.Context, l *Lease, reason string) (*Status, error) {
	req := r.leaseRequest(l)
	req.Reason = reason
	resp, err := r.call(ctx, "handback", req)
	return resp.Status, err
}
