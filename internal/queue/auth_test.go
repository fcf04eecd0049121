package queue

import (
	"context"
	"fmt"
	"net"
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

func TestQueue_RemoteWorkerPermissions(t *testing.T) {
	ctx := context.Background()
	const token = "worker-token-0123456789"
	bridge, err := Open(ctx, zerolog.Nop(), Config{DataDir: t.TempDir(), Listen: freeAddr(t), Token: token, AckWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bridge.Close() })
	url := bridge.ClientURL()

	t.Run("wrong or missing token is refused", func(t *testing.T) {
		for _, tok := range []string{"", "wrong-token-wrong-token"} {
			q, err := Open(ctx, zerolog.Nop(), Config{URL: url, Token: tok, Bind: true})
			if err == nil {
				q.Close()
				t.Fatalf("token %q: connected", tok)
			}
		}
	})

	t.Run("a worker takes, updates and acks jobs", func(t *testing.T) {
		w, err := Open(ctx, zerolog.Nop(), Config{URL: url, Token: token, Bind: true})
		if err != nil {
			t.Fatalf("worker open: %v", err)
		}
		defer w.Close()
		st, _, err := bridge.Enqueue(ctx, Job{SeriesID: series, Model: "m", ModelVersion: "1"}, false)
		if err != nil {
			t.Fatal(err)
		}
		d, err := w.Next(ctx, 3*time.Second)
		if err != nil || d == nil {
			t.Fatalf("next: %v %v", d, err)
		}
		if err := d.Heartbeat(); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Update(ctx, st.ID, func(s *Status) error { s.State = StateDone; return nil }); err != nil {
			t.Fatalf("update: %v", err)
		}
		if err := d.Ack(); err != nil {
			t.Fatalf("ack: %v", err)
		}
		if got, _ := bridge.Status(ctx, st.ID); got.State != StateDone {
			t.Fatalf("state %s", got.State)
		}
	})

	t.Run("a worker cannot publish jobs or change streams", func(t *testing.T) {
		nc, err := nats.Connect(url, nats.Token(token))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := js.Publish(cctx, Subject, []byte(`{"id":"x"}`)); err == nil {
			t.Error("worker published a job")
		}
		if err := js.DeleteStream(cctx, StreamName); err == nil {
			t.Error("worker deleted the stream")
		}
		if _, err := js.CreateStream(cctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil"}}); err == nil {
			t.Error("worker created a stream")
		}
	})
}

func TestQueue_Cursor(t *testing.T) {
	q := setup(t, "")
	ctx := context.Background()
	if _, ok, err := q.Cursor(ctx, "c"); err != nil || ok {
		t.Fatalf("fresh cursor: %v %v", ok, err)
	}
	for _, v := range []int64{0, 42, 7} {
		if err := q.SetCursor(ctx, "c", v); err != nil {
			t.Fatal(err)
		}
		got, ok, err := q.Cursor(ctx, "c")
		if err != nil || !ok || got != v {
			t.Fatal(fmt.Sprint(got, ok, err))
		}
	}
}
