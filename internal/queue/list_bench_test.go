package queue

import (
	"context"
	"fmt"
	"testing"

	"github.com/rs/zerolog"
)

// BenchmarkQueue_List measures a page of the newest jobs as the bucket
// grows: it should not grow with it.
func BenchmarkQueue_List(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			q, err := Open(context.Background(), zerolog.Nop(), Config{DataDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			ctx := context.Background()
			for i := range n {
				if _, _, err := q.Enqueue(ctx, Job{SeriesID: seriesN(i), Model: "m", ModelVersion: "1", Trigger: "webhook"}, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				if page, err := q.List(ctx, "", 50); err != nil || len(page) != 50 {
					b.Fatalf("%v %d", err, len(page))
				}
			}
		})
	}
}
