package inference

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/segbridge/segbridge/internal/volume"
)

// instanceFetcher is what fetching a series needs of Orthanc.
type instanceFetcher interface {
	InstanceFile(ctx context.Context, id string) ([]byte, error)
}

// FetchFiles downloads the instances ids, concurrency at a time over
// keep-alive connections, and hands each file to fn (index, bytes) in the
// goroutine that downloaded it, so work on one file overlaps the download of
// the next. The first error, from a download or from fn, cancels the rest.
func FetchFiles(ctx context.Context, f instanceFetcher, ids []string, concurrency int, fn func(i int, data []byte) error) error {
	n := len(ids)
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idx := make(chan int)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	for g := 0; g < max(1, min(concurrency, n)); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				data, err := f.InstanceFile(ctx, ids[i])
				if err != nil {
					fail(fmt.Errorf("download instance %s: %w", ids[i], err))
					continue
				}
				if err := fn(i, data); err != nil {
					fail(err)
				}
			}
		}()
	}
feed:
	for i := 0; i < n; i++ {
		select {
		case idx <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(idx)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// FetchInstances downloads and parses a series' instances with FetchFiles,
// parsing each file as it arrives. It returns the instances in ids' order and
// the time spent parsing, summed over the goroutines. progress, when set, is
// called after each instance. JPEG 2000 instances fail: see
// FetchInstancesWith.
func FetchInstances(ctx context.Context, f instanceFetcher, ids []string, concurrency int, progress func(done, total int)) ([]*volume.Instance, time.Duration, error) {
	return FetchInstancesWith(ctx, f, volume.Parser{}, ids, concurrency, progress)
}

// FetchInstancesWith is FetchInstances with a parser that may decode JPEG
// 2000 (volume.Parser.Decoder).
func FetchInstancesWith(ctx context.Context, f instanceFetcher, parser volume.Parser, ids []string, concurrency int, progress func(done, total int)) ([]*volume.Instance, time.Duration, error) {
	out := make([]*volume.Instance, len(ids))
	var (
		mu    sync.Mutex
		done  int
		parse time.Duration
	)
	err := FetchFiles(ctx, f, ids, concurrency, func(i int, data []byte) error {
		start := time.Now()
		inst, err := parser.ParseInstance(ctx, data)
		took := time.Since(start)
		if err != nil {
			return fmt.Errorf("instance %s: %w", ids[i], err)
		}
		out[i] = inst
		mu.Lock()
		done++
		parse += took
		d := done
		mu.Unlock()
		if progress != nil {
			progress(d, len(ids))
		}
		return nil
	})
	if err != nil {
		return nil, parse, err
	}
	return out, parse, nil
}
