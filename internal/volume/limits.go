package volume

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/segbridge/segbridge/internal/checked"
)

// Default limits, used where a Limits field is zero.
const (
	// DefaultMaxVoxels admits 512x512x2048 voxels.
	DefaultMaxVoxels = 512 * 512 * 2048
	// DefaultMaxBytes is 2 GiB: the float32 volume of DefaultMaxVoxels
	// voxels, so that neither default limit admits what the other refuses.
	DefaultMaxBytes = 4 * DefaultMaxVoxels
)

// Limits bounds what one job holds for a series. Each is checked before the
// memory it bounds is allocated: from the first instance's header before
// the download (CheckSeries), as the files arrive (Budget), and from the
// parsed instances before the volume is made (Assemble).
type Limits struct {
	// MaxVoxels (SEGBRIDGE_MAX_VOXELS) is the largest Cols*Rows*Depth of a
	// series' volume; 0 means DefaultMaxVoxels.
	MaxVoxels int64
	// MaxBytes (SEGBRIDGE_MAX_BYTES) bounds, each on its own, the bytes of
	// the series' DICOM files, summed as they are downloaded (Budget), and
	// the bytes of its float32 volume, 4 per voxel (Assemble); 0 means
	// DefaultMaxBytes. A series of 8- or 16-bit pixels takes at most half
	// as many bytes as files as its volume does.
	MaxBytes int64
}

// WithDefaults returns l with zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxVoxels == 0 {
		l.MaxVoxels = DefaultMaxVoxels
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// Header is what CheckSeries needs of a series' first instance: the Image
// Pixel attributes that Orthanc's /instances/{id}/tags?short lists.
type Header struct {
	// Rows and Columns are the image size in pixels, 1..MaxDimension.
	Rows, Columns int
	// NumberOfFrames is the frames of a multi-frame instance; 0 means 1.
	NumberOfFrames int
	// BitsAllocated is 8, 16 or 32.
	BitsAllocated int
	// SamplesPerPixel is 1 for the greyscale images segbridge reads; 0 means 1.
	SamplesPerPixel int
}

// CheckSeries refuses, before anything is downloaded, a series of the given
// number of instances that would break l if every instance were like the
// first, whose header is h: its volume over MaxVoxels, or its float32 volume
// over MaxBytes. It also refuses a header whose values no instance of an
// image series segbridge reads can have. The errors wrap ErrInvalidSeries,
// name the figures and the variable to raise. A series whose later
// instances are larger than its first passes here and is stopped by Budget
// during the download or by Assemble.
func (l Limits) CheckSeries(h Header, instances int) error {
	l = l.WithDefaults()
	frames, samples := h.NumberOfFrames, h.SamplesPerPixel
	if frames == 0 {
		frames = 1
	}
	if samples == 0 {
		samples = 1
	}
	var err error
	switch {
	case instances < 1:
		err = errors.New("the series has no instances")
	case h.Rows == 0 || h.Columns == 0:
		err = errors.New("the first instance has no Rows or Columns: it is not an image")
	case h.Rows < 0 || h.Columns < 0 || h.Rows > MaxDimension || h.Columns > MaxDimension:
		err = fmt.Errorf("the first instance is %dx%d pixels: Rows and Columns must be 1..%d", h.Columns, h.Rows, MaxDimension)
	case frames < 0 || frames > math.MaxInt32:
		err = fmt.Errorf("the first instance has NumberOfFrames %d: it must be 1..%d", frames, math.MaxInt32)
	case h.BitsAllocated != 8 && h.BitsAllocated != 16 && h.BitsAllocated != 32:
		err = fmt.Errorf("the first instance has BitsAllocated %d: only 8, 16 or 32 are supported", h.BitsAllocated)
	case samples != 1:
		err = fmt.Errorf("the first instance has SamplesPerPixel %d: colour images are not supported", samples)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSeries, err)
	}
	planes, ok := checked.Mul(instances, frames)
	if !ok {
		planes = math.MaxInt
	}
	if err := l.checkVolume(h.Columns, h.Rows, planes); err != nil {
		each := ""
		if frames > 1 {
			each = fmt.Sprintf(" of %d frames each", frames)
		}
		return fmt.Errorf("%w: %d instances%s of %dx%d pixels: %w", ErrInvalidSeries, instances, each, h.Columns, h.Rows, err)
	}
	return nil
}

// checkVolume checks a volume of cols x rows x depth voxels against l, which
// has its defaults. Its errors do not wrap ErrInvalidSeries.
func (l Limits) checkVolume(cols, rows, depth int) error {
	if cols < 1 || rows < 1 || cols > MaxDimension || rows > MaxDimension {
		return fmt.Errorf("image size %dx%d is outside 1..%d", cols, rows, MaxDimension)
	}
	voxels, ok := checked.Mul(cols, rows, depth)
	if !ok || int64(voxels) > l.MaxVoxels {
		size := "more than can be counted"
		if ok {
			size = fmt.Sprint(voxels)
		}
		return fmt.Errorf("volume of %dx%dx%d = %s voxels exceeds the limit of %d; "+
			"raise SEGBRIDGE_MAX_VOXELS to accept larger series", cols, rows, depth, size, l.MaxVoxels)
	}
	if bytes, ok := checked.Mul(voxels, 4); !ok || int64(bytes) > l.MaxBytes {
		size := "more than can be counted"
		if ok {
			size = fmt.Sprint(bytes)
		}
		return fmt.Errorf("volume of %dx%dx%d needs %s bytes, over the limit of %d; "+
			"raise SEGBRIDGE_MAX_BYTES to accept larger series", cols, rows, depth, size, l.MaxBytes)
	}
	return nil
}

// Budget counts the bytes of a series' DICOM files as they are downloaded,
// against Limits.MaxBytes, so that a download stops as soon as the series
// turns out larger than its first instance promised. It is safe for
// concurrent use by the download's goroutines. Make one with
// Limits.NewBudget.
type Budget struct {
	max  int64
	used atomic.Int64
}

// NewBudget returns an empty Budget of l.MaxBytes (DefaultMaxBytes when 0).
func (l Limits) NewBudget() *Budget {
	return &Budget{max: l.WithDefaults().MaxBytes}
}

// Add counts n more bytes. Once the total passes the limit it returns an
// error wrapping ErrInvalidSeries, and so does every later call.
func (b *Budget) Add(n int) error {
	if n < 0 {
		return fmt.Errorf("budget: cannot add %d bytes", n)
	}
	for {
		old := b.used.Load()
		sum := int64(math.MaxInt64) // saturate rather than wrap
		if int64(n) <= math.MaxInt64-old {
			sum = old + int64(n)
		}
		if b.used.CompareAndSwap(old, sum) {
			if sum > b.max {
				return fmt.Errorf("%w: the series' files add up to more than %d bytes (%d so far), the limit; "+
					"raise SEGBRIDGE_MAX_BYTES to accept larger series", ErrInvalidSeries, b.max, sum)
			}
			return nil
		}
	}
}

// Used returns the bytes counted so far.
func (b *Budget) Used() int64 { return b.used.Load() }
