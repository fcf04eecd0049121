package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/segbridge/segbridge/internal/fault"
	"github.com/segbridge/segbridge/internal/volume"
)

// InstanceFetcher is what fetching a series needs of Orthanc.
type InstanceFetcher interface {
	InstanceFile(ctx context.Context, id string) ([]byte, error)
}

// fileRecycler is an InstanceFetcher that takes back the files it returned
// once nothing refers to them, to download later files into them
// (orthanc.Client.Recycle): reading a series into memory already touched,
// rather than fresh, is what makes a download as fast as the network.
type fileRecycler interface {
	Recycle(file []byte)
}

// FetchFiles downloads the instances ids, concurrency at a time over
// keep-alive connections, and hands each file to fn (index, bytes) in the
// goroutine that downloaded it, so work on one file overlaps the download of
// the next. The first error, from a download or from fn, cancels the rest. A
// panic in fn or a download becomes that error (a *fault.PanicError), so it
// cannot end the process.
func FetchFiles(ctx context.Context, f InstanceFetcher, ids []string, concurrency int, fn func(i int, data []byte) error) error {
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
	one := func(i int) {
		defer func() {
			if r := recover(); r != nil {
				fail(fmt.Errorf("instance %s: %w", ids[i], fault.Recovered(r)))
			}
		}()
		data, err := f.InstanceFile(ctx, ids[i])
		if err != nil {
			fail(fmt.Errorf("download instance %s: %w", ids[i], err))
			return
		}
		if err := fn(i, data); err != nil {
			fail(err)
		}
	}
	for g := 0; g < max(1, min(concurrency, n)); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				one(i)
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
// the time spent parsing, summed over the goroutines. parser decodes what
// needs decoding (volume.Parser's Decoder for JPEG 2000). accept, when set,
// sees each file's size first and may refuse it (a byte budget); progress,
// when set, is called after each instance.
//
// Uncompressed instances read their pixels from the downloaded files (see
// volume.Parser). When f takes files back (Recycle), each file goes back
// once no instance reads it, for the next series' download.
func FetchInstances(ctx context.Context, f InstanceFetcher, parser volume.Parser, ids []string, concurrency int,
	accept func(size int) error, progress func(done, total int)) ([]*volume.Instance, time.Duration, error) {
	if r, ok := f.(fileRecycler); ok && parser.Release == nil {
		parser.Release = r.Recycle
	}
	out := make([]*volume.Instance, len(ids))
	var (
		mu    sync.Mutex
		done  int
		parse time.Duration
	)
	err := FetchFiles(ctx, f, ids, concurrency, func(i int, data []byte) error {
		if accept != nil {
			if err := accept(len(data)); err != nil {
				return err
			}
		}
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
