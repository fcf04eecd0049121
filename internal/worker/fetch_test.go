package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/volume"
)

// recyclingFetcher serves files from memory, each in a new copy, and
// records the copies handed back to it.
type recyclingFetcher struct {
	files map[string][]byte

	mu       sync.Mutex
	given    map[*byte]bool
	recycled chan []byte
}

func (f *recyclingFetcher) InstanceFile(_ context.Context, id string) ([]byte, error) {
	b, ok := f.files[id]
	if !ok {
		return nil, fmt.Errorf("no instance %s", id)
	}
	c := append([]byte(nil), b...)
	f.mu.Lock()
	f.given[&c[0]] = true
	f.mu.Unlock()
	return c, nil
}

func (f *recyclingFetcher) Recycle(file []byte) {
	f.mu.Lock()
	ok := f.given[&file[0]]
	f.mu.Unlock()
	if !ok {
		panic("recycled a buffer the fetcher never gave")
	}
	f.recycled <- file
}

// TestFetchInstances_RecyclesFiles: the files of a series go back to a
// fetcher that takes them back, and only once the instances reading them
// are gone.
func TestFetchInstances_RecyclesFiles(t *testing.T) {
	s := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "8")
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &recyclingFetcher{files: map[string][]byte{}, given: map[*byte]bool{}, recycled: make(chan []byte, len(entries))}
	var ids []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		f.files[e.Name()] = b
		ids = append(ids, e.Name())
	}
	insts, _, err := FetchInstances(context.Background(), f, volume.Parser{}, ids, 4, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	if n := len(f.recycled); n != 0 {
		t.Fatalf("%d files recycled while their instances are in use", n)
	}
	v, err := volume.Assemble(insts, volume.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range s.Values {
		if v.Data[i] != want {
			t.Fatalf("voxel %d is %v, want %v", i, v.Data[i], want)
		}
	}
	insts = nil
	deadline := time.Now().Add(10 * time.Second)
	for len(f.recycled) < len(ids) && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(f.recycled); n != len(ids) {
		t.Fatalf("%d of %d files recycled once the instances were gone", n, len(ids))
	}
}
