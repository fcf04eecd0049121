package orthanc

import (
	"context"
	"fmt"
)

// VerifyBeside checks a series a worker claims it stored beside a source
// series (the SR, the preview): Orthanc has it, it is in the source's study,
// and its modality is the one such an output has. A claim that fails wraps
// ErrNotOurSEG.
func (c *Client) VerifyBeside(ctx context.Context, seriesID, sourceSeriesID, modality string) error {
	if !ValidID(seriesID) {
		return fmt.Errorf("series %q: %w", seriesID, ErrNotOurSEG)
	}
	out, err := c.Series(ctx, seriesID)
	if err != nil {
		return fmt.Errorf("series %s: %w", seriesID, err)
	}
	src, err := c.Series(ctx, sourceSeriesID)
	if err != nil {
		return err
	}
	if out.ParentStudy != src.ParentStudy || out.Modality() != modality {
		return fmt.Errorf("series %s (%s, study %s) is not a %s beside series %s: %w", seriesID, out.Modality(), out.ParentStudy, modality, sourceSeriesID, ErrNotOurSEG)
	}
	return nil
}
