// Package bench holds segbridge's benchmark, built only with the "bench" tag:
// `make bench` runs it and writes bench/results.json and bench/RESULTS.md.
package bench
