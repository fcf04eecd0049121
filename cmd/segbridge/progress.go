package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progressBar shows what `segbridge segment` (or `models install`) is doing: a bar redrawn in
// place on a terminal, plain lines (one per stage, and one per tenth of a
// stage's progress) when stderr is a file or a pipe.
type progressBar struct {
	w io.Writer
	// prefix starts the plain lines: the command's name.
	prefix string
	tty    bool
	start  time.Time
	name   string
	last   int // last tenth of the runs printed in plain mode
	drawn  bool
}

func newProgressBar(w io.Writer) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progressBar{w: w, prefix: "segment", tty: tty, start: time.Now()}
}

// stage starts a named stage.
func (b *progressBar) stage(name string) {
	b.name, b.last = name, -1
	b.draw(0, 0)
}

// progress follows the pipeline's stages and the fraction of each done
// (pipeline.Timer's report).
func (b *progressBar) progress(stage string, fraction float64) {
	if stage != b.name {
		b.stage(stage)
	}
	if fraction > 0 {
		b.draw(int(fraction*100), 100)
	}
}

func (b *progressBar) draw(done, total int) {
	elapsed := time.Since(b.start).Seconds()
	if !b.tty {
		if total > 0 {
			tenth := done * 10 / total
			if tenth == b.last {
				return
			}
			b.last = tenth
			fmt.Fprintf(b.w, "%s: %6.1fs %s %d%%\n", b.prefix, elapsed, b.name, done*100/total)
			return
		}
		fmt.Fprintf(b.w, "%s: %6.1fs %s\n", b.prefix, elapsed, b.name)
		return
	}
	const width = 30
	fill := 0
	count := ""
	if total > 0 {
		fill = done * width / total
		count = fmt.Sprintf(" %d%%", done*100/total)
	}
	fmt.Fprintf(b.w, "\r\033[K[%s%s] %6.1fs %s%s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), elapsed, b.name, count)
	b.drawn = true
}

// finish ends the bar's line on a terminal.
func (b *progressBar) finish() {
	if b.tty && b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}
