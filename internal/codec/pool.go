package codec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/volume"
)

// Defaults of Config.
const (
	DefaultFrameTimeout = 30 * time.Second
	DefaultMemoryLimit  = 1 << 30
	DefaultStartTimeout = 10 * time.Second
	// DefaultOpenJPEGLibrary is Debian's libopenjp2-7.
	DefaultOpenJPEGLibrary = "libopenjp2.so.7"
	// DefaultCharLSLibrary is Debian's libcharls2 (CharLS 2.x, whose C
	// API this package calls).
	DefaultCharLSLibrary = "libcharls.so.2"
)

// Config configures a Pool. Every field has a default.
type Config struct {
	// Size is the most children decoding at once. Default GOMAXPROCS.
	Size int
	// FrameTimeout bounds one frame's decoding, wall clock; a child that
	// takes longer is killed and the frame fails. Default 30 s.
	FrameTimeout time.Duration
	// CPULimit bounds one frame's CPU time (RLIMIT_CPU in the child), a
	// backstop behind FrameTimeout. Default FrameTimeout.
	CPULimit time.Duration
	// MemoryLimit is the address space (RLIMIT_AS) a child may take beyond
	// its size at start, in bytes: what a decoder may allocate for one
	// frame. Default 1 GiB.
	MemoryLimit int64
	// StartTimeout bounds a child's start: exec, loading the libraries,
	// hello. Default 10 s.
	StartTimeout time.Duration
	// OpenJPEGLibrary is the OpenJPEG library children load with dlopen
	// to decode JPEG 2000 and HTJ2K, a path or a file name the dynamic
	// linker finds. Default libopenjp2.so.7.
	OpenJPEGLibrary string
	// CharLSLibrary is the CharLS 2.x library children load with dlopen
	// to decode JPEG-LS, as OpenJPEGLibrary. Default libcharls.so.2.
	CharLSLibrary string
	// Executable is the binary started as a child. Default os.Executable():
	// segbridge itself, whose main() calls RunIfChild first thing.
	Executable string

	// faults lets children accept the fault requests of this package's tests.
	faults bool
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() (Config, error) {
	if c.Size <= 0 {
		c.Size = runtime.GOMAXPROCS(0)
	}
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = DefaultFrameTimeout
	}
	if c.CPULimit <= 0 {
		c.CPULimit = c.FrameTimeout
	}
	if c.MemoryLimit <= 0 {
		c.MemoryLimit = DefaultMemoryLimit
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.OpenJPEGLibrary == "" {
		c.OpenJPEGLibrary = DefaultOpenJPEGLibrary
	}
	if c.CharLSLibrary == "" {
		c.CharLSLibrary = DefaultCharLSLibrary
	}
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("codec: Executable: find this program's binary: %w", err)
		}
		c.Executable = exe
	}
	return c, nil
}

// Pool decodes JPEG 2000, HTJ2K and JPEG-LS frames in child processes: at most Config.Size at
// once, each child started when first needed, reused for later frames and
// jobs, and replaced when it dies. It is safe for concurrent use.
type Pool struct {
	cfg    Config
	logger zerolog.Logger
	slots  chan struct{}

	mu     sync.Mutex
	idle   []*child
	live   map[*child]struct{}
	closed bool
}

var _ volume.FrameDecoder = (*Pool)(nil)

// NewPool returns a Pool; it starts no process until a frame needs one.
func NewPool(logger zerolog.Logger, cfg Config) (*Pool, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	return &Pool{
		cfg:    cfg,
		logger: logger.With().Str("component", "codec").Logger(),
		slots:  make(chan struct{}, cfg.Size),
		live:   map[*child]struct{}{},
	}, nil
}

// Close stops every child; frames being decoded fail. Later calls to
// DecodeFrame return ErrClosed. It is safe to call more than once.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	children := make([]*child, 0, len(p.live))
	for c := range p.live {
		children = append(children, c)
	}
	p.live, p.idle = map[*child]struct{}{}, nil
	p.mu.Unlock()
	for _, c := range children {
		c.closing.Store(true)
		c.stop()
	}
	return nil
}

// DecodeFrame decodes one JPEG 2000, HTJ2K or JPEG-LS frame into dst (see
// volume.FrameDecoder), with the library its transfer syntax calls for.
// Errors of the frame's own making are *DecodeError and wrap
// volume.ErrInvalidSeries; ctx's error, ErrClosed and a failure to start a
// child are returned as they are.
func (p *Pool) DecodeFrame(ctx context.Context, f *volume.Frame, dst []byte) error {
	if len(dst) != f.Size() {
		return fmt.Errorf("codec: %d-byte buffer for a frame of %d bytes", len(dst), f.Size())
	}
	cd := codecFor(f.TransferSyntax)
	if cd == nil {
		return fmt.Errorf("codec: transfer syntax %s (%s) is neither JPEG 2000 nor JPEG-LS", f.TransferSyntax, volume.TransferSyntaxName(f.TransferSyntax))
	}
	if f.SamplesPerPixel != 1 {
		return &DecodeError{Reason: fmt.Sprintf("%s frames of %d samples per pixel are not supported", cd.name, f.SamplesPerPixel)}
	}
	req := &request{op: cd.op, rows: f.Rows, cols: f.Cols, bitsAllocated: f.BitsAllocated,
		bitsStored: f.BitsStored, highBit: f.HighBit, signed: f.Signed, data: f.Data}
	if err := req.check(); err != nil {
		return &DecodeError{Reason: err.Error()}
	}
	// CharLS decodes into a buffer of 2 bytes a sample before packing.
	need := int64(len(f.Data)) + int64(f.Size())
	if cd == codecJLS {
		need += 2 * int64(f.Rows) * int64(f.Cols)
	}
	if need > p.cfg.MemoryLimit {
		return &DecodeError{Reason: fmt.Sprintf("a frame of %d compressed and %d decoded bytes is over the %s decoder's memory limit of %d bytes",
			len(f.Data), f.Size(), cd.name, p.cfg.MemoryLimit)}
	}
	return p.do(ctx, cd, req, dst, f)
}

// do runs one request on a child; cd names the codec in messages and says
// which library the child must have loaded.
func (p *Pool) do(ctx context.Context, cd *codec, req *request, dst []byte, f *volume.Frame) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.slots }()
	c, err := p.get(ctx)
	if err != nil {
		return err
	}
	lib := c.libs[cd.library]
	if !lib.loaded {
		// Not kept: the next child tries to load the library again, so
		// installing it needs no restart of segbridge.
		p.discard(c)
		return &DecodeError{Err: cd.missing, Reason: fmt.Sprintf(
			"decoding %s needs the %s library, which could not be loaded: install %s (%s)", cd.name, cd.libName, cd.pkg, lib.text)}
	}
	if cd == codecJ2K && f != nil && isHTJ2K(f.TransferSyntax) && !atLeast(lib.text, 2, 5) {
		p.put(c)
		return &DecodeError{Reason: fmt.Sprintf("OpenJPEG %s cannot decode HTJ2K: it needs 2.5.0 or later", lib.text)}
	}
	healthy, err := c.roundTrip(ctx, cd.name+" decoder", req, dst, p.cfg.FrameTimeout)
	if healthy {
		p.put(c)
		return nil
	}
	p.discard(c)
	var de *DecodeError
	if errors.As(err, &de) && f != nil {
		ev := p.logger.Warn().Int("pid", c.pid()).Str("frame", f.Describe()).Str("reason", de.Reason)
		if tail := c.stderr.String(); tail != "" {
			ev = ev.Str("stderr", tail)
		}
		ev.Msg("frame decoder failed on a frame; its process is replaced")
	}
	return err
}

// atLeast reports whether version ("2.5.0") is at least major.minor.
func atLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	return err1 == nil && err2 == nil && (ma > major || (ma == major && mi >= minor))
}

// get returns an idle child, or starts one.
func (p *Pool) get(ctx context.Context) (*child, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		select {
		case <-c.exited:
			// Died while idle (the OOM killer, an operator): not the
			// next frame's fault.
			delete(p.live, c)
			p.logger.Warn().Int("pid", c.pid()).Str("exit", c.death()).Msg("idle frame decoder process ended; starting another")
			c.closeFiles()
			continue
		default:
		}
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := p.start(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.stop()
		return nil, ErrClosed
	}
	p.live[c] = struct{}{}
	return c, nil
}

// put returns a healthy child to the idle list.
func (p *Pool) put(c *child) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.live[c]; !ok || p.closed {
		go c.stop()
		return
	}
	p.idle = append(p.idle, c)
}

// discard forgets a child that failed and makes sure it is gone.
func (p *Pool) discard(c *child) {
	p.mu.Lock()
	delete(p.live, c)
	p.mu.Unlock()
	c.stop()
}

// childEnvironment is the whole environment of a child: the marker and what
// finding the library needs. The child decodes bytes from the network, so it
// gets none of the parent's credentials (ORTHANC_PASSWORD, tokens).
func childEnvironment() []string {
	env := []string{childEnv + "=1", "GOMAXPROCS=1"}
	for _, k := range []string{"LD_LIBRARY_PATH", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// start starts a child and waits for its hello.
func (p *Pool) start(ctx context.Context) (*child, error) {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start frame decoder process: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, fmt.Errorf("start frame decoder process: %w", err)
	}
	// -test.run=^$: a test binary whose TestMain lacks the RunIfChild hook
	// then runs no test (and fails the handshake) instead of its suite.
	cmd := exec.Command(p.cfg.Executable, "-test.run=^$")
	cmd.Env = childEnvironment()
	c := &child{cmd: cmd, in: stdinW, outFile: outR, out: bufio.NewReaderSize(outR, 1<<16),
		stderr: &stderrBuffer{}, exited: make(chan struct{})}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, outW, c.stderr
	// The children die with the parent, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	stdinR.Close()
	outW.Close()
	if err != nil {
		stdinW.Close()
		outR.Close()
		return nil, fmt.Errorf("start frame decoder process %s: %w", p.cfg.Executable, err)
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()

	var timedOut atomic.Bool
	timer := time.AfterFunc(p.cfg.StartTimeout, func() { timedOut.Store(true); c.kill() })
	stop := context.AfterFunc(ctx, c.kill)
	cfg := childConfig{memoryLimit: p.cfg.MemoryLimit, cpuSeconds: int((p.cfg.CPULimit + time.Second - 1) / time.Second),
		faults: p.cfg.faults, libraries: [numLibraries]string{libOpenJPEG: p.cfg.OpenJPEGLibrary, libCharLS: p.cfg.CharLSLibrary}}
	err = writeBlob(c.in, cfg.marshal())
	var hello []byte
	if err == nil {
		hello, err = readSmall(c.out)
	}
	timer.Stop()
	stop()
	switch {
	case err != nil && ctx.Err() != nil:
		c.stop()
		return nil, ctx.Err()
	case err != nil:
		c.reap(time.Second)
		c.closeFiles()
		why := c.death()
		if timedOut.Load() {
			why = fmt.Sprintf("no answer within %s", p.cfg.StartTimeout)
		}
		return nil, fmt.Errorf("frame decoder process %s did not start (%s); its main() must call codec.RunIfChild first",
			p.cfg.Executable, why)
	}
	libs, err := unmarshalHello(hello)
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("frame decoder process %s: %w", p.cfg.Executable, err)
	}
	c.libs = libs
	ev := p.logger.Debug().Int("pid", c.pid())
	for i, l := range libs {
		key := [numLibraries]string{libOpenJPEG: "openjpeg", libCharLS: "charls"}[i]
		if l.loaded {
			ev = ev.Str(key, l.text)
		} else {
			ev = ev.Str(key+"_missing", l.text)
		}
	}
	ev.Msg("frame decoder process started")
	return c, nil
}

// child is one decoder process.
type child struct {
	cmd     *exec.Cmd
	in      *os.File      // the write end of its stdin
	outFile *os.File      // the read end of its protocol output
	out     *bufio.Reader // reads outFile
	stderr  *stderrBuffer
	libs    [numLibraries]libraryState // from its hello

	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // set before exited is closed
	closing atomic.Bool   // set by Pool.Close before it kills the child
}

func (c *child) pid() int {
	if c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// kill ends the process; a blocked read or write on its pipes then fails.
func (c *child) kill() { _ = c.cmd.Process.Kill() }

// stop ends the process, waits for it and closes the pipes. A child asked
// to stop while idle would end by itself when its stdin closes; killing it
// is as clean and does not wait.
func (c *child) stop() {
	c.kill()
	<-c.exited
	c.closeFiles()
}

// reap waits up to grace for the process to end by itself, then kills it,
// and waits until it has been reaped.
func (c *child) reap(grace time.Duration) {
	select {
	case <-c.exited:
	case <-time.After(grace):
		c.kill()
		<-c.exited
	}
}

func (c *child) closeFiles() {
	c.in.Close()
	c.outFile.Close()
}

// roundTrip sends one request and reads its response into dst, within
// timeout. healthy says whether the child may serve another request: it is
// false after any failure, since a decoder that failed on a frame may have
// left its process in a bad state.
func (c *child) roundTrip(ctx context.Context, name string, req *request, dst []byte, timeout time.Duration) (healthy bool, err error) {
	var timedOut, cancelled atomic.Bool
	timer := time.AfterFunc(timeout, func() { timedOut.Store(true); c.kill() })
	stop := context.AfterFunc(ctx, func() { cancelled.Store(true); c.kill() })
	var status byte
	var msg []byte
	err = writeRequest(c.in, req)
	if err == nil {
		status, msg, err = c.readResponse(dst)
	}
	timer.Stop()
	stop()
	switch {
	case cancelled.Load():
		return false, ctx.Err()
	case c.closing.Load():
		// Killed by Pool.Close, not by its frame.
		return false, ErrClosed
	case timedOut.Load():
		return false, &DecodeError{Reason: fmt.Sprintf("%s did not finish within %s (its process was killed)", name, timeout)}
	case err == nil && status == statusOK:
		return true, nil
	case err == nil:
		return false, &DecodeError{Reason: name + ": " + string(msg)}
	}
	// The child died or broke the protocol. Give a dying child a moment
	// to end by itself, so that its own exit status is the one reported.
	c.reap(time.Second)
	return false, &DecodeError{Reason: name + " crashed: " + c.death()}
}

// readResponse reads one response: decoded pixels into dst, or a message.
func (c *child) readResponse(dst []byte) (byte, []byte, error) {
	n, err := readLength(c.out, maxRequest)
	if err != nil {
		return 0, nil, err
	}
	if n < 1 {
		return 0, nil, errors.New("empty response")
	}
	status, err := c.out.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	switch {
	case status == statusOK && n-1 == int64(len(dst)):
		_, err = io.ReadFull(c.out, dst)
		return status, nil, err
	case status == statusFailed && n-1 <= maxMessage:
		msg := make([]byte, n-1)
		_, err = io.ReadFull(c.out, msg)
		return status, msg, err
	}
	return 0, nil, fmt.Errorf("response of status %d and %d bytes breaks the protocol", status, n-1)
}

// death says how an exited child ended, for messages.
func (c *child) death() string {
	select {
	case <-c.exited:
	default:
		return "still running"
	}
	var why string
	var ee *exec.ExitError
	switch {
	case c.waitErr == nil:
		why = "it exited"
	case errors.As(c.waitErr, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			why = "killed by signal " + ws.Signal().String()
		case ws.ExitStatus() == exitCPULimit:
			why = "it used more than its CPU time limit"
		default:
			why = fmt.Sprintf("exit status %d", ws.ExitStatus())
		}
	default:
		why = c.waitErr.Error()
	}
	if s := crashSummary(c.stderr.String()); s != "" {
		why += ": " + s
	}
	return why
}

// crashSummary picks the lines of a child's stderr that say what happened.
func crashSummary(stderr string) string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		for _, p := range []string{"fatal error:", "panic:", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT",
			"signal arrived during cgo execution", "runtime: out of memory", "codec child:"} {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
				break
			}
		}
		if len(out) == 3 {
			break
		}
	}
	return strings.Join(out, "; ")
}

// stderrBuffer keeps the start and the end of what a child writes to its
// stderr: a Go crash report begins with what happened and ends with where.
type stderrBuffer struct {
	mu   sync.Mutex
	head []byte
	tail []byte
}

const (
	stderrHead = 2 << 10
	stderrTail = 4 << 10
)

func (b *stderrBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := stderrHead - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if len(b.tail) > stderrTail {
		b.tail = append(b.tail[:0], b.tail[len(b.tail)-stderrTail:]...)
	}
	return n, nil
}

func (b *stderrBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.tail) == 0 {
		return string(b.head)
	}
	return string(b.head) + "\n...\n" + string(b.tail)
}
