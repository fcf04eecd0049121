package queue

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

// TestQueue_ClaimOnce: of two bridges on one NATS server claiming the same
// job generation at once, exactly one wins; a new generation is claimed
// anew.
func TestQueue_ClaimOnce(t *testing.T) {
	q, b := setup(t, Config{Listen: freeAddr(t), Token: workerToken})
	// A second bridge, on the same server.
	other, err := Open(context.Background(), q.logger, Config{URL: q.ClientURL(), Token: q.bridgeToken})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	id := JobID(series, "m", "1")
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := q
			if i%2 == 1 {
				c = other
			}
			ok, err := c.ClaimOnce(b.ctx, "notify", id, 1)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d claims won, want 1", n)
	}
	if ok, err := q.ClaimOnce(b.ctx, "notify", id, 2); err != nil || !ok {
		t.Errorf("the next generation: %v %v, want won", ok, err)
	}
	if ok, err := q.ClaimOnce(b.ctx, "other", id, 1); err != nil || !ok {
		t.Errorf("another kind of claim: %v %v, want won", ok, err)
	}
	if _, err := q.ClaimOnce(b.ctx, "notify", "not a job", 1); err == nil {
		t.Error("an invalid job id was claimed")
	}
}
