package queue

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

const workerToken = "worker-token-0123456789-abcdefghij"

// verifierFunc adapts a function to ResultVerifier.
type verifierFunc func(ctx context.Context, job Job, res Result) error

func (f verifierFunc) VerifyResult(ctx context.Context, job Job, res Result) error {
	return f(ctx, job, res)
}

// setupRemote opens a bridge-side queue with a listener and a worker RPC
// service, and a remote worker connected to it.
func setupRemote(t *testing.T, verify ResultVerifier) (*Queue, *Remote, *bundle) {
	t.Helper()
	q, b := setup(t, Config{Listen: freeAddr(t), Token: workerToken})
	sctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := q.ServeWorkers(sctx, verify); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRemote(b.ctx, zerolog.Nop(), Config{URL: q.ClientURL(), Token: workerToken})
	if err != nil {
		t.Fatalf("remote open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return q, r, b
}

func TestRemote_WrongTokenRefused(t *testing.T) {
	q, _ := setup(t, Config{Listen: freeAddr(t), Token: workerToken})
	for _, tok := range []string{"", "wrong-token-wrong-token-wrong-token"} {
		r, err := OpenRemote(context.Background(), zerolog.Nop(), Config{URL: q.ClientURL(), Token: tok})
		if err == nil {
			r.Close()
			t.Fatalf("token %q: connected", tok)
		}
	}
}

func TestRemote_WorkerRunsAJobThroughTheBridge(t *testing.T) {
	var verified []Result
	q, r, b := setupRemote(t, verifierFunc(func(_ context.Context, job Job, res Result) error {
		if res.SEGSeriesID != "real-seg" {
			return errors.New("no such SEG in Orthanc")
		}
		verified = append(verified, res)
		return nil
	}))
	st, _, err := q.Enqueue(b.ctx, testJob("m"), false)
	if err != nil {
		t.Fatal(err)
	}
	d := next(t, r, 3*time.Second)
	l, err := r.Take(b.ctx, d, "gpu-box")
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	if got := mustStatus(t, q, st.ID); got.State != StateRunning || got.Worker != "remote:gpu-box" {
		t.Fatalf("after take: %+v", got)
	}
	if err := r.Progress(b.ctx, l, "inference", 0.3); err != nil {
		t.Fatalf("progress: %v", err)
	}
	if got := mustStatus(t, q, st.ID); got.Stage != "inference" {
		t.Fatalf("stage %q", got.Stage)
	}
	// A made-up result is refused; the job stays running.
	var refused *RefusedError
	if _, err := r.Complete(b.ctx, l, Result{SEGSeriesID: "made-up"}); !errors.As(err, &refused) {
		t.Fatalf("made-up result: %v, want RefusedError", err)
	}
	// A forged lease is refused.
	forged := *l
	forged.token = "forged"
	if _, err := r.Complete(b.ctx, &forged, Result{SEGSeriesID: "real-seg"}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("forged lease: %v, want ErrLeaseLost", err)
	}
	done, err := r.Complete(b.ctx, l, Result{SEGSeriesID: "real-seg", SEGInstanceID: "i"})
	if err != nil || done.State != StateDone || len(verified) != 1 {
		t.Fatalf("complete: %v %+v", err, done)
	}
	waitDepth(t, q, 0)
}

func TestRemote_FailRetryHandBack(t *testing.T) {
	q, r, b := setupRemote(t, nil)
	st, _, _ := q.Enqueue(b.ctx, testJob("m"), false)
	l, err := r.Take(b.ctx, next(t, r, 3*time.Second), "w")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.HandBack(b.ctx, l, "stopping"); err != nil || got.State != StateQueued {
		t.Fatalf("hand back: %v %+v", err, got)
	}
	// The hand-back used up no delivery: two retries, then the third
	// delivery is the last of 3 (the bridge counts attempts itself).
	for i := 1; i <= 2; i++ {
		l, err = r.Take(b.ctx, next(t, r, 3*time.Second), "w")
		if err != nil {
			t.Fatal(err)
		}
		if l.Attempt != i {
			t.Fatalf("delivery %d after the hand-back, want %d", l.Attempt, i)
		}
		if got, err := r.RetryLater(b.ctx, l, 50*time.Millisecond, "503", nil); err != nil || got.State != StateQueued {
			t.Fatalf("retry %d: %v %+v", i, err, got)
		}
	}
	l, err = r.Take(b.ctx, next(t, r, 3*time.Second), "w")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.RetryLater(b.ctx, l, time.Second, "503 again", nil); err != nil || got.State != StateFailed {
		t.Fatalf("retry on the last delivery: %v %+v", err, got)
	}
	if mustStatus(t, q, st.ID).State != StateFailed {
		t.Fatal("not failed")
	}
	waitDepth(t, q, 0)
}

// TestRemote_WorkerTokenIsOnlyAWorker connects with the worker token as an
// attacker would, with a plain NATS client, and tries what a worker must not.
func TestRemote_WorkerTokenIsOnlyAWorker(t *testing.T) {
	q, _, b := setupRemote(t, nil)
	st, _, _ := q.Enqueue(b.ctx, testJob("victim"), false)
	before := mustStatus(t, q, st.ID)

	deniedCh := make(chan string, 64)
	nc, err := nats.Connect(q.ClientURL(), nats.Token(workerToken), nats.CustomInboxPrefix(WorkerInboxPrefix),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { deniedCh <- err.Error() }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)

	if _, err := js.Publish(ctx, Subject, []byte(`{"id":"x"}`)); err == nil {
		t.Error("worker published a job")
	}
	if err := js.DeleteStream(ctx, StreamName); err == nil {
		t.Error("worker deleted the stream")
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil"}}); err == nil {
		t.Error("worker created a stream")
	}
	if _, err := js.KeyValue(ctx, StatusBucket); err == nil {
		t.Error("worker opened the status bucket")
	}
	// Raw writes to the bucket's subjects: a rollup that would wipe it, and a
	// made-up done status.
	fake := fmt.Sprintf(`{"id":%q,"state":"done","seg_series_id":"made-up"}`, st.ID)
	_ = nc.PublishMsg(&nats.Msg{Subject: "$KV." + StatusBucket + "." + st.ID, Data: []byte(fake)})
	_ = nc.PublishMsg(&nats.Msg{Subject: "$KV." + StatusBucket + ".x", Header: nats.Header{"Nats-Rollup": {"all"}}})
	// Acknowledging a job message directly.
	_ = nc.Publish(fmt.Sprintf("$JS.ACK.%s.%s.1.%d.1.1.0", StreamName, ConsumerName, st.Seq), []byte("+TERM"))
	// Reading other clients' replies.
	for _, subj := range []string{"_INBOX.>", BridgeInboxPrefix + ".>", ">"} {
		sub, err := nc.SubscribeSync(subj)
		if err == nil {
			_ = nc.Flush()
			sub.Unsubscribe()
		}
	}
	_ = nc.Flush()
	var denied []string
	timeout := time.After(3 * time.Second)
collect:
	for len(denied) < 7 {
		select {
		case d := <-deniedCh:
			denied = append(denied, d)
		case <-timeout:
			break collect
		}
	}
	if len(denied) < 7 {
		t.Errorf("only %d permission violations reported: %v", len(denied), denied)
	}
	for _, d := range denied {
		if !strings.Contains(strings.ToLower(d), "permissions violation") {
			t.Errorf("unexpected error %q", d)
		}
	}
	after := mustStatus(t, q, st.ID)
	if after.State != before.State || after.SEGSeriesID != "" {
		t.Fatalf("status changed: %+v", after)
	}
	if n, _ := q.Depth(b.ctx); n != 1 {
		t.Fatalf("the victim's message is gone: depth %d", n)
	}
}

func TestRemote_TakeChecksTheMessage(t *testing.T) {
	q, r, b := setupRemote(t, nil)
	if _, _, err := q.Enqueue(b.ctx, testJob("a"), false); err != nil {
		t.Fatal(err)
	}
	d := next(t, r, 3*time.Second)
	other := *d
	other.Job = testJob("b")
	other.Job.ID, other.Job.Generation = JobID(series, "b", "1.0"), 1
	var refused *RefusedError
	if _, err := r.Take(b.ctx, &other, "w"); !errors.As(err, &refused) {
		t.Fatalf("take of a job its message does not name: %v, want RefusedError", err)
	}
	if _, err := q.Status(b.ctx, other.Job.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the refused take wrote a status: %v", err)
	}
}

func TestOpen_NonLoopbackListenerNeedsTLS(t *testing.T) {
	_, err := Open(context.Background(), zerolog.Nop(), Config{DataDir: t.TempDir(), Listen: "0.0.0.0:0", Token: workerToken})
	if err == nil || !strings.Contains(err.Error(), "SEGBRIDGE_NATS_TLS_CERT") {
		t.Fatalf("plain text on 0.0.0.0: %v", err)
	}
	q, err := Open(context.Background(), zerolog.Nop(), Config{DataDir: t.TempDir(), Listen: "0.0.0.0:0", Token: workerToken, AllowPlaintext: true})
	if err != nil {
		t.Fatalf("plain text allowed explicitly: %v", err)
	}
	q.Close()
}

func TestRemote_OverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeTestPKI(t, dir)
	q, b := setup(t, Config{Listen: freeAddr(t), Token: workerToken, TLSCertFile: cert, TLSKeyFile: key})
	if _, err := OpenRemote(b.ctx, zerolog.Nop(), Config{URL: q.ClientURL(), Token: workerToken}); err == nil {
		t.Fatal("connected without trusting the server's CA")
	}
	r, err := OpenRemote(b.ctx, zerolog.Nop(), Config{URL: strings.Replace(q.ClientURL(), "nats://", "tls://", 1), Token: workerToken, TLSCAFile: ca})
	if err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
	r.Close()
}

// writeTestPKI writes a CA and a server certificate for 127.0.0.1 signed by it.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "segbridge"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}

func TestQueue_Cursor(t *testing.T) {
	q, b := setup(t, Config{})
	if _, ok, err := q.Cursor(b.ctx, "c"); err != nil || ok {
		t.Fatalf("fresh cursor: %v %v", ok, err)
	}
	for _, v := range []int64{0, 42, 7} {
		if err := q.SetCursor(b.ctx, "c", v); err != nil {
			t.Fatal(err)
		}
		got, ok, err := q.Cursor(b.ctx, "c")
		if err != nil || !ok || got != v {
			t.Fatal(fmt.Sprint(got, ok, err))
		}
	}
}
