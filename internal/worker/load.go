package worker

import (
	"context"
	"fmt"

	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/volume"
)

// SeriesSource is what LoadSeries reads from Orthanc (an *orthanc.Client).
type SeriesSource interface {
	Series(ctx context.Context, id string) (*orthanc.Series, error)
	InstanceFile(ctx context.Context, id string) ([]byte, error)
}

var _ SeriesSource = (*orthanc.Client)(nil)

// LoadSeries downloads, parses and assembles a series the way a job does —
// decoder decoding JPEG 2000, HTJ2K and JPEG-LS,
// lim bounding the bytes and the volume — for readers other than jobs, such
// as the status page's previews.
func LoadSeries(ctx context.Context, p SeriesSource, id string, lim volume.Limits, decoder volume.FrameDecoder, concurrency int) (*volume.Volume, error) {
	ser, err := p.Series(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read series %s: %w", id, err)
	}
	lim = lim.WithDefaults()
	budget := lim.NewBudget()
	parser := volume.Parser{Decoder: decoder, MaxBytes: lim.MaxBytes}
	insts, _, err := FetchInstances(ctx, p, parser, ser.Instances, concurrency, budget.Add, nil)
	if err != nil {
		return nil, fmt.Errorf("series %s: %w", id, err)
	}
	vol, err := volume.Assemble(insts, lim)
	if err != nil {
		return nil, fmt.Errorf("series %s: %w", id, err)
	}
	return vol, nil
}
