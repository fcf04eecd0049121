package volume

import (
	"encoding/binary"
	"math"
)

// pixelFormat is how one instance stores its samples.
type pixelFormat struct {
	bitsAllocated int // 8, 16 or 32
	bitsStored    int
	highBit       int
	signed        bool
	bigEndian     bool
}

func (p pixelFormat) bytesPerSample() int { return p.bitsAllocated / 8 }

// sampleConv turns a raw sample into a modality value.
type sampleConv struct {
	shift  uint32 // bits below the stored bits (HighBit+1-BitsStored)
	keep   uint32 // 32 - BitsStored: the bits above the stored ones, in a uint32
	signed bool
	slope  float64
	icpt   float64
}

// value keeps the stored bits of u (those above HighBit may hold overlays or
// garbage), sign-extends them when signed, and applies the rescale. The
// float64 conversion around the product keeps it from being fused with the
// addition, so the result is the same on every architecture (and equal to
// numpy's stored*slope+intercept).
func (c sampleConv) value(u uint32) float32 {
	u = (u >> c.shift) << c.keep
	var v float64
	if c.signed {
		v = float64(int32(u) >> c.keep)
	} else {
		v = float64(u >> c.keep)
	}
	return float32(float64(v*c.slope) + c.icpt)
}

// lutKey identifies the mapping from raw sample to modality value of 8- and
// 16-bit instances; instances with equal keys share a lookup table.
type lutKey struct {
	bitsAllocated, bitsStored, highBit int
	signed                             bool
	slope, icpt                        float64
}

// lutCache holds the last lookup table a decoding goroutine built. Within a
// series slope and intercept rarely change, so one entry serves every slice.
type lutCache struct {
	key lutKey
	lut []float32
}

func (in *Instance) conv() sampleConv {
	p := in.pix
	return sampleConv{
		shift:  uint32(p.highBit + 1 - p.bitsStored),
		keep:   uint32(32 - p.bitsStored),
		signed: p.signed,
		slope:  in.RescaleSlope,
		icpt:   in.RescaleIntercept,
	}
}

// lookupTable returns the table mapping every raw 8- or 16-bit sample to its
// modality value, from cache when it holds it, or nil when building one would
// cost more than it saves. A table lookup is about twice as fast as the
// arithmetic, and building a 16-bit table costs about as much as decoding 64Ki
// pixels directly.
func (in *Instance) lookupTable(n int, cache *lutCache) []float32 {
	p := in.pix
	if p.bitsAllocated > 16 {
		return nil
	}
	key := lutKey{p.bitsAllocated, p.bitsStored, p.highBit, p.signed, in.RescaleSlope, in.RescaleIntercept}
	if cache != nil && cache.lut != nil && cache.key == key {
		return cache.lut
	}
	size := 1 << p.bitsAllocated
	if cache == nil && n < 2*size {
		return nil
	}
	c := in.conv()
	lut := make([]float32, size)
	for u := range lut {
		lut[u] = c.value(uint32(u))
	}
	if cache != nil {
		cache.key, cache.lut = key, lut
	}
	return lut
}

// decodeInto writes the instance's modality values into dst, which holds
// exactly Rows*Cols values. cache may be nil.
func (in *Instance) decodeInto(dst []float32, cache *lutCache) {
	p := in.pix
	raw := in.raw[:len(dst)*p.bytesPerSample()]
	if lut := in.lookupTable(len(dst), cache); lut != nil {
		switch {
		case p.bitsAllocated == 8:
			lut = lut[:256]
			for i, b := range raw {
				dst[i] = lut[b]
			}
		case !p.bigEndian:
			lut = lut[:65536]
			for i := range dst {
				dst[i] = lut[binary.LittleEndian.Uint16(raw[2*i:])]
			}
		default:
			lut = lut[:65536]
			for i := range dst {
				dst[i] = lut[binary.BigEndian.Uint16(raw[2*i:])]
			}
		}
		return
	}
	c := in.conv()
	switch {
	case p.bitsAllocated == 8:
		for i, b := range raw {
			dst[i] = c.value(uint32(b))
		}
	case p.bitsAllocated == 16 && !p.bigEndian:
		for i := range dst {
			dst[i] = c.value(uint32(binary.LittleEndian.Uint16(raw[2*i:])))
		}
	case p.bitsAllocated == 16:
		for i := range dst {
			dst[i] = c.value(uint32(binary.BigEndian.Uint16(raw[2*i:])))
		}
	case !p.bigEndian:
		for i := range dst {
			dst[i] = c.value(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	default:
		for i := range dst {
			dst[i] = c.value(binary.BigEndian.Uint32(raw[4*i:]))
		}
	}
}

func cross(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }

func sub(a, b [3]float64) [3]float64 { return [3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]} }

func norm(a [3]float64) float64 { return math.Sqrt(dot(a, a)) }

func unit(a [3]float64) [3]float64 {
	n := norm(a)
	if n == 0 {
		return a
	}
	return [3]float64{a[0] / n, a[1] / n, a[2] / n}
}
