package worker

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/volume"
)

// checkSeries refuses a series from Orthanc's instance count and the first
// instance's header alone, before anything is downloaded: each attribute is
// bounded by what it may hold, the products are computed without overflow,
// and the worst case (every instance like the first) must fit the limits.
func checkSeries(h *orthanc.ImageHeader, instances int, lim volume.Limits) error {
	lim = lim.WithDefaults()
	switch {
	case h.Rows < 1 || h.Rows > math.MaxUint16 || h.Columns < 1 || h.Columns > math.MaxUint16:
		return fmt.Errorf("%w: image size %dx%d is not 1..65535 by 1..65535", volume.ErrInvalidSeries, h.Columns, h.Rows)
	case h.NumberOfFrames < 1 || h.NumberOfFrames > math.MaxInt32:
		return fmt.Errorf("%w: NumberOfFrames %d", volume.ErrInvalidSeries, h.NumberOfFrames)
	case h.BitsAllocated != 8 && h.BitsAllocated != 16 && h.BitsAllocated != 32:
		return fmt.Errorf("%w: BitsAllocated %d is not supported; only 8, 16 or 32", volume.ErrInvalidSeries, h.BitsAllocated)
	case h.SamplesPerPixel < 1 || h.SamplesPerPixel > 4:
		return fmt.Errorf("%w: SamplesPerPixel %d", volume.ErrInvalidSeries, h.SamplesPerPixel)
	}
	voxels, ok := mul(h.Rows, h.Columns, h.NumberOfFrames, int64(instances))
	if !ok || voxels > lim.MaxVoxels {
		return fmt.Errorf("%w: %d instances of %dx%d pixels (%d frames each) make %d voxels, over the limit of %d (SEGBRIDGE_MAX_VOXELS)",
			volume.ErrInvalidSeries, instances, h.Columns, h.Rows, h.NumberOfFrames, voxels, lim.MaxVoxels)
	}
	raw, ok1 := mul(voxels, h.SamplesPerPixel, h.BitsAllocated/8)
	vol, ok2 := mul(voxels, 4)
	if !ok1 || !ok2 || raw > lim.MaxBytes || vol > lim.MaxBytes {
		return fmt.Errorf("%w: %d instances of %dx%d pixels need %d bytes of pixel data and %d bytes of volume, over the limit of %d (SEGBRIDGE_MAX_BYTES)",
			volume.ErrInvalidSeries, instances, h.Columns, h.Rows, raw, vol, lim.MaxBytes)
	}
	return nil
}

// mul multiplies non-negative numbers; ok is false on overflow.
func mul(xs ...int64) (int64, bool) {
	p := int64(1)
	for _, x := range xs {
		if x < 0 {
			return 0, false
		}
		hi, lo := bits.Mul64(uint64(p), uint64(x))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		p = int64(lo)
	}
	return p, true
}
