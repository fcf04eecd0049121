package orthanc

import "testing"

func TestBufferPool(t *testing.T) {
	p := newBufferPool(3 << 20)
	a := p.get(525_000)
	if len(a) != 525_000 || cap(a) != sizeClass(525_000) {
		t.Fatalf("len %d cap %d", len(a), cap(a))
	}
	if c := sizeClass(525_000); c < 525_000 || c > 525_000*9/8+4096 {
		t.Fatalf("class %d wastes more than an eighth", c)
	}
	p.put(a)
	if b := p.get(524_300); &b[0] != &a[0] {
		t.Error("a buffer of the same class was not reused")
	}
	// Another class is not served from it.
	p.put(a)
	if b := p.get(100_000); &b[0] == &a[0] || cap(b) < 100_000 {
		t.Error("a buffer of another class was handed out")
	}
	// No more than max bytes are kept.
	p = newBufferPool(1 << 20)
	for range 4 {
		p.put(make([]byte, 0, 512<<10))
	}
	if p.held > 1<<20 {
		t.Errorf("holds %d bytes, more than its %d", p.held, 1<<20)
	}
	// A foreign buffer joins the largest class it covers.
	p = newBufferPool(1 << 30)
	foreign := make([]byte, 600_000)
	p.put(foreign)
	got := p.get(sizeClass(600_000) - 70_000)
	if &got[0] != &foreign[0] || cap(got) > 600_000 {
		t.Error("a foreign buffer was not kept in the class below its capacity")
	}
	// Nothing is kept with a negative max, and small buffers never.
	p = newBufferPool(-1)
	p.put(make([]byte, 1<<20))
	p.put(make([]byte, 10))
	if p.held != 0 {
		t.Errorf("holds %d bytes", p.held)
	}
}
