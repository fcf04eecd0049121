package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Delivery is one job handed to a worker. The worker must end it with Ack,
// Retry or Term; until then it holds a lease of AckWait, renewed by Heartbeat.
type Delivery struct {
	Job Job
	// Attempt is 1 on the first delivery of this message.
	Attempt int
	// LastAttempt is true when no redelivery will follow a Retry.
	LastAttempt bool
	msg         jetstream.Msg
}

// Next waits up to wait for a job. It returns (nil, nil) when none came.
func (q *Queue) Next(ctx context.Context, wait time.Duration) (*Delivery, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	msg, err := q.cons.Next(jetstream.FetchContext(wctx))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if wctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("queue: next: %w", err)
	}
	d := &Delivery{msg: msg, Attempt: 1}
	if md, err := msg.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
	}
	d.LastAttempt = d.Attempt >= q.cfg.MaxDeliver
	if err := json.Unmarshal(msg.Data(), &d.Job); err != nil || d.Job.ID == "" {
		// A message we cannot read can never succeed; drop it loudly.
		_ = msg.Term()
		return nil, fmt.Errorf("queue: dropped unreadable job message: %v", err)
	}
	return d, nil
}

// Heartbeat renews the lease on the job.
func (d *Delivery) Heartbeat() error { return d.msg.InProgress() }

// Ack removes the job from the queue: it is finished, one way or the other.
func (d *Delivery) Ack() error { return d.msg.DoubleAck(context.Background()) }

// Retry hands the job back to be delivered again after delay.
func (d *Delivery) Retry(delay time.Duration) error { return d.msg.NakWithDelay(delay) }

// Term ends the job's message without redelivery.
func (d *Delivery) Term() error { return d.msg.Term() }
