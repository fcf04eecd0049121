package orthanc

import (
	"context"
	"fmt"
	"sort"
)

// SeriesSummary is what a list of series shows of one: who, when, what.
type SeriesSummary struct {
	ID                string `json:"series_id"`
	StudyID           string `json:"study_id"`
	PatientName       string `json:"patient_name"`
	PatientID         string `json:"patient_id"`
	StudyDate         string `json:"study_date"`
	StudyDescription  string `json:"study_description"`
	SeriesDescription string `json:"series_description"`
	SeriesNumber      string `json:"series_number"`
	Modality          string `json:"modality"`
	BodyPartExamined  string `json:"body_part_examined,omitempty"`
	Instances         int    `json:"instances"`
	// LastUpdate is when Orthanc last received an instance of the series
	// (Orthanc's "20260120T100000" form).
	LastUpdate string `json:"last_update"`
	// MainDicomTags are the series' main tags, as the intake reads them.
	MainDicomTags map[string]string `json:"-"`
}

// RecentSeries returns up to limit of the series Orthanc received last whose
// modality keep accepts, newest first. It reads the last scan series Orthanc
// stored (Orthanc lists resources in the order it created them) with their
// studies, so its cost is bounded on a PACS of any size.
func (c *Client) RecentSeries(ctx context.Context, scan, limit int, keep func(modality string) bool) ([]SeriesSummary, error) {
	var stats struct{ CountSeries int }
	if err := c.getJSON(ctx, "/statistics", &stats); err != nil {
		return nil, err
	}
	since := max(0, stats.CountSeries-scan)
	var all []struct {
		ID            string
		ParentStudy   string
		Instances     []string
		LastUpdate    string
		MainDicomTags map[string]string
	}
	if err := c.getJSON(ctx, fmt.Sprintf("/series?expand&since=%d&limit=%d", since, scan), &all); err != nil {
		return nil, err
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].LastUpdate > all[j].LastUpdate })
	studies := map[string]*Study{}
	var out []SeriesSummary
	for _, s := range all {
		if len(out) >= limit {
			break
		}
		if keep != nil && !keep(s.MainDicomTags["Modality"]) {
			continue
		}
		st, ok := studies[s.ParentStudy]
		if !ok {
			var err error
			if st, err = c.Study(ctx, s.ParentStudy); err != nil {
				// Deleted meanwhile: skip the series.
				studies[s.ParentStudy] = nil
				continue
			}
			studies[s.ParentStudy] = st
		}
		if st == nil {
			continue
		}
		out = append(out, SeriesSummary{
			ID: s.ID, StudyID: s.ParentStudy,
			PatientName:       st.PatientMainDicomTags["PatientName"],
			PatientID:         st.PatientMainDicomTags["PatientID"],
			StudyDate:         st.MainDicomTags["StudyDate"],
			StudyDescription:  st.MainDicomTags["StudyDescription"],
			SeriesDescription: s.MainDicomTags["SeriesDescription"],
			SeriesNumber:      s.MainDicomTags["SeriesNumber"],
			Modality:          s.MainDicomTags["Modality"],
			BodyPartExamined:  s.MainDicomTags["BodyPartExamined"],
			Instances:         len(s.Instances),
			LastUpdate:        s.LastUpdate,
			MainDicomTags:     s.MainDicomTags,
		})
	}
	return out, nil
}
