package codec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// childEnv marks a process started by a Pool as a decoder child.
const childEnv = "SEGBRIDGE_CODEC_CHILD"

// Exit codes of a child that ends on its own.
const (
	exitProtocol = 3 // the parent sent something that is not the protocol
	exitCPULimit = 4 // a request used more CPU time than its limit
)

// RunIfChild turns the process into a decoder child when a Pool started it,
// and never returns then; otherwise it returns at once. main() and the
// TestMain of every package whose tests decode JPEG 2000 or JPEG-LS must call it first
// thing, since a Pool's children are re-executions of os.Executable().
func RunIfChild() {
	if os.Getenv(childEnv) != "1" {
		return
	}
	os.Exit(serveChild())
}

// serveChild answers requests on stdin until it closes. The protocol runs
// on stdin and a duplicate of stdout; fd 1 itself is pointed at stderr, so
// that anything a C library prints cannot corrupt a response.
func serveChild() int {
	out, err := syscall.Dup(1)
	if err == nil {
		err = syscall.Dup3(2, 1, 0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "codec child: redirect stdout:", err)
		return exitProtocol
	}
	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	w := bufio.NewWriterSize(os.NewFile(uintptr(out), "codec-out"), 1<<16)
	if err := childLoop(in, w); err != nil {
		fmt.Fprintln(os.Stderr, "codec child:", err)
		return exitProtocol
	}
	return 0
}

func childLoop(in *bufio.Reader, w *bufio.Writer) error {
	b, err := readSmall(in)
	if err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	cfg, err := unmarshalConfig(b)
	if err != nil {
		return err
	}
	// Each library is loaded on its own: a child without CharLS still
	// decodes JPEG 2000, and the pool tells a JPEG-LS frame what to
	// install. The pool replaces a child that lacked the library a frame
	// needed, so a library installed later is found by the next one.
	var hello [numLibraries]libraryState
	j2k, err := loadOpenJPEG(cfg.libraries[libOpenJPEG])
	if err != nil {
		hello[libOpenJPEG] = libraryState{text: err.Error()}
	} else {
		hello[libOpenJPEG] = libraryState{loaded: true, text: j2k.version()}
	}
	jls, err := loadCharLS(cfg.libraries[libCharLS])
	if err != nil {
		hello[libCharLS] = libraryState{text: err.Error()}
	} else {
		hello[libCharLS] = libraryState{loaded: true, text: jls.version()}
	}
	if err := limitMemory(cfg.memoryLimit); err != nil {
		return err
	}
	// SIGXCPU would otherwise be ignored by the Go runtime; past the
	// limit, the child ends with a code the parent recognises.
	xcpu := make(chan os.Signal, 1)
	signal.Notify(xcpu, syscall.SIGXCPU)
	go func() {
		<-xcpu
		fmt.Fprintln(os.Stderr, "codec child: CPU time limit exceeded")
		os.Exit(exitCPULimit)
	}()
	if err := writeBlob(w, marshalHello(hello)); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var buf []byte
	for {
		req, err := readRequest(in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		if err := limitCPU(cfg.cpuSeconds); err != nil {
			return err
		}
		var derr error
		switch {
		case isDecode(req.op):
			if n := req.size(); cap(buf) < n {
				buf = make([]byte, n)
			}
			buf = buf[:req.size()]
			switch {
			case req.op == opDecodeJ2K && j2k != nil:
				derr = j2k.decode(req, buf)
			case req.op == opDecodeJLS && jls != nil:
				derr = jls.decode(req, buf)
			default:
				// The pool checks the hello first; this answers a
				// pool that did not.
				derr = errors.New("the library for this codec is not loaded")
			}
		case cfg.faults:
			derr = fault(req.op)
		default:
			derr = fmt.Errorf("unknown request %d", req.op)
		}
		if derr != nil {
			err = writeMessage(w, statusFailed, []byte(derr.Error()))
		} else {
			err = writeMessage(w, statusOK, buf)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return fmt.Errorf("write response: %w", err)
		}
	}
}

// limitMemory caps the child's address space (RLIMIT_AS) at its size now,
// with the libraries loaded, plus limit bytes: a codestream that makes a
// decoder allocate without bound gets a failed allocation, which OpenJPEG
// and CharLS report as an error, instead of the machine's memory.
func limitMemory(limit int64) error {
	if limit <= 0 {
		return nil
	}
	size, err := addressSpace()
	if err != nil {
		return fmt.Errorf("limit memory: %w", err)
	}
	max := uint64(size + limit)
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: max, Max: max}); err != nil {
		return fmt.Errorf("limit memory: %w", err)
	}
	return nil
}

// addressSpace returns the process's virtual memory size in bytes.
func addressSpace() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("empty /proc/self/statm")
	}
	pages, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

// limitCPU sets the soft RLIMIT_CPU to the CPU time used so far plus
// seconds, so that each request, not the child's whole life, has the limit.
// It backs up the parent's wall-clock timeout: should the parent's timer
// fail, a spinning decoder still ends.
func limitCPU(seconds int) error {
	if seconds <= 0 {
		return nil
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return fmt.Errorf("limit CPU: %w", err)
	}
	used := uint64(ru.Utime.Sec+ru.Stime.Sec) + 1
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CPU, &lim); err != nil {
		return fmt.Errorf("limit CPU: %w", err)
	}
	lim.Cur = min(used+uint64(seconds), lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_CPU, &lim); err != nil {
		return fmt.Errorf("limit CPU: %w", err)
	}
	return nil
}
