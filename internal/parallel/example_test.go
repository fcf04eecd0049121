package parallel_test

import (
	"errors"
	"fmt"

	"github.com/segbridge/segbridge/internal/parallel"
)

// A job's one recover turns a panic on any goroutine of its fan-outs into
// the job's error.
func ExampleRange() {
	job := func(data []float32) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("job failed: %v", r)
			}
		}()
		parallel.Range(len(data), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				data[i] = 1 / data[i]
				if data[i] > 1 {
					panic(errors.New("value below 1"))
				}
			}
		})
		return nil
	}
	fmt.Println(job([]float32{1, 1, 1, 1}))
	err := job([]float32{1, 0.5, 1, 1})
	fmt.Println(err != nil)
	// Output:
	// <nil>
	// true
}
