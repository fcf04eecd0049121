package orthanc

import (
	"math/bits"
	"sync"
)

// bufferPool keeps the buffers of downloaded instance files that their
// users hand back (Client.Recycle) for later downloads, so that a worker,
// series after series, reads files into memory it has already touched.
// Fresh memory costs a page fault per 4 KiB: on loopback, reading a series
// into new buffers took three times as long as reading it and throwing the
// bytes away. Buffer sizes come in classes an eighth of the power of two
// below them apart, so a series' files, of nearly equal sizes, share one class. At most
// max bytes are kept; a buffer handed back beyond that is left to the
// garbage collector.
type bufferPool struct {
	max int64

	mu   sync.Mutex
	held int64
	free map[int][][]byte
}

func newBufferPool(max int64) *bufferPool {
	return &bufferPool{max: max, free: map[int][][]byte{}}
}

// sizeClass rounds n up to the next size class.
func sizeClass(n int) int {
	if n <= 4096 {
		return 4096
	}
	step := 1 << (bits.Len(uint(n-1)) - 4) // an eighth of the power of two below n
	return (n + step - 1) / step * step
}

// get returns a buffer of length n, recycled when one of its class is free.
func (p *bufferPool) get(n int) []byte {
	c := sizeClass(n)
	p.mu.Lock()
	if l := p.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		p.free[c] = l[:len(l)-1]
		p.held -= int64(cap(b))
		p.mu.Unlock()
		return b[:n]
	}
	p.mu.Unlock()
	return make([]byte, n, c)
}

// put keeps b for a later get of its class, unless that would hold more
// than max bytes. b may come from elsewhere: it joins the largest class its
// capacity covers.
func (p *bufferPool) put(b []byte) {
	c := cap(b)
	if c < 4096 {
		return
	}
	if sizeClass(c) != c {
		// The largest class that is at most c.
		step := 1 << (bits.Len(uint(c)) - 4)
		c = c / step * step
		if sizeClass(c) != c {
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held+int64(c) > p.max {
		return
	}
	p.held += int64(c)
	p.free[c] = append(p.free[c], b[:0:c])
}
