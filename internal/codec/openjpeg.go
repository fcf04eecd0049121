//go:build cgo

package codec

// OpenJPEG is loaded with dlopen at run time, not linked: the build needs
// only the header of libopenjp2-7-dev, and a segbridge on a machine without
// libopenjp2-7 starts and serves, failing only the jobs that need JPEG 2000,
// with a reason saying what to install. Each function pointer is declared
// with the header's own prototype (__typeof__), so a mismatch is a compile
// error rather than a crash. This code runs only in decoder child processes.

/*
#cgo CFLAGS: -I/usr/include/openjpeg-2.5 -O2
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openjpeg.h>

#define SB_FN(name) __typeof__(opj_##name) *name

typedef struct {
	void *handle;
	SB_FN(version);
	SB_FN(create_decompress);
	SB_FN(set_default_decoder_parameters);
	SB_FN(setup_decoder);
	SB_FN(decoder_set_strict_mode); // 2.5.0 and later; may be NULL
	SB_FN(set_error_handler);
	SB_FN(set_warning_handler);
	SB_FN(set_info_handler);
	SB_FN(stream_create);
	SB_FN(stream_set_read_function);
	SB_FN(stream_set_skip_function);
	SB_FN(stream_set_seek_function);
	SB_FN(stream_set_user_data);
	SB_FN(stream_set_user_data_length);
	SB_FN(stream_destroy);
	SB_FN(read_header);
	SB_FN(decode);
	SB_FN(end_decompress);
	SB_FN(destroy_codec);
	SB_FN(image_destroy);
} sb_opj;

// sb_load opens the library at path and finds its functions; on failure it
// returns NULL with a message in err.
static sb_opj *sb_load(const char *path, char *err, size_t errlen) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "%s", dlerror());
		return NULL;
	}
	sb_opj *lib = calloc(1, sizeof *lib);
	if (!lib) {
		snprintf(err, errlen, "out of memory");
		dlclose(h);
		return NULL;
	}
	lib->handle = h;
#define SB_LOAD(name, required) \
	lib->name = (__typeof__(lib->name))dlsym(h, "opj_" #name); \
	if (!lib->name && required) { \
		snprintf(err, errlen, "%s has no function opj_%s", path, #name); \
		free(lib); dlclose(h); return NULL; \
	}
	SB_LOAD(version, 1)
	SB_LOAD(create_decompress, 1)
	SB_LOAD(set_default_decoder_parameters, 1)
	SB_LOAD(setup_decoder, 1)
	SB_LOAD(decoder_set_strict_mode, 0)
	SB_LOAD(set_error_handler, 1)
	SB_LOAD(set_warning_handler, 1)
	SB_LOAD(set_info_handler, 1)
	SB_LOAD(stream_create, 1)
	SB_LOAD(stream_set_read_function, 1)
	SB_LOAD(stream_set_skip_function, 1)
	SB_LOAD(stream_set_seek_function, 1)
	SB_LOAD(stream_set_user_data, 1)
	SB_LOAD(stream_set_user_data_length, 1)
	SB_LOAD(stream_destroy, 1)
	SB_LOAD(read_header, 1)
	SB_LOAD(decode, 1)
	SB_LOAD(end_decompress, 1)
	SB_LOAD(destroy_codec, 1)
	SB_LOAD(image_destroy, 1)
#undef SB_LOAD
	return lib;
}

static const char *sb_version(sb_opj *lib) { return lib->version(); }

// A codestream in memory, read by OpenJPEG through these callbacks.
typedef struct {
	const uint8_t *data;
	OPJ_SIZE_T len, pos;
} sb_mem;

static OPJ_SIZE_T sb_read(void *buf, OPJ_SIZE_T n, void *ud) {
	sb_mem *m = ud;
	if (m->pos >= m->len) return (OPJ_SIZE_T)-1;
	if (n > m->len - m->pos) n = m->len - m->pos;
	memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	return n;
}

static OPJ_OFF_T sb_skip(OPJ_OFF_T n, void *ud) {
	sb_mem *m = ud;
	if (n < 0 ? (OPJ_SIZE_T)(-n) > m->pos : (OPJ_SIZE_T)n > m->len - m->pos) {
		m->pos = m->len;
		return -1;
	}
	m->pos += n;
	return n;
}

static OPJ_BOOL sb_seek(OPJ_OFF_T n, void *ud) {
	sb_mem *m = ud;
	if (n < 0 || (OPJ_SIZE_T)n > m->len) {
		m->pos = m->len;
		return OPJ_FALSE;
	}
	m->pos = (OPJ_SIZE_T)n;
	return OPJ_TRUE;
}

typedef struct {
	opj_image_t *image;
	const int32_t *data;
	int prec, sgnd;
	char err[1024];
} sb_result;

// sb_on_error collects OpenJPEG's error messages, "; "-separated.
static void sb_on_error(const char *msg, void *ud) {
	sb_result *r = ud;
	size_t n = strlen(r->err);
	if (n + 3 >= sizeof r->err) return;
	if (n > 0) { strcat(r->err, "; "); n += 2; }
	snprintf(r->err + n, sizeof r->err - n, "%s", msg);
	n = strlen(r->err);
	while (n > 0 && (r->err[n-1] == '\n' || r->err[n-1] == ' ')) r->err[--n] = 0;
}

static void sb_quiet(const char *msg, void *ud) { (void)msg; (void)ud; }

static void sb_prefix(sb_result *r, const char *what) {
	char tmp[sizeof r->err];
	if (r->err[0]) snprintf(tmp, sizeof tmp, "%s: %s", what, r->err);
	else snprintf(tmp, sizeof tmp, "%s", what);
	memcpy(r->err, tmp, sizeof r->err);
}

// sb_decode decodes the codestream (or JP2 file) buf into an image whose one
// component must be cols x rows; the sizes are checked against the header
// before anything is decoded, so a codestream cannot make OpenJPEG allocate
// for a larger image than the DICOM header declares. It returns 1 with the
// image in r, or 0 with a message in r->err.
static int sb_decode(sb_opj *lib, const uint8_t *buf, size_t len, int rows, int cols, sb_result *r) {
	static const uint8_t jp2sig[] = {0, 0, 0, 0x0c, 'j', 'P', ' ', ' '};
	memset(r, 0, sizeof *r);
	sb_mem mem = {buf, len, 0};
	OPJ_CODEC_FORMAT fmt = (len >= sizeof jp2sig && memcmp(buf, jp2sig, sizeof jp2sig) == 0) ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K;
	opj_codec_t *codec = lib->create_decompress(fmt);
	if (!codec) {
		sb_prefix(r, "cannot create a decoder");
		return 0;
	}
	lib->set_error_handler(codec, sb_on_error, r);
	lib->set_warning_handler(codec, sb_quiet, NULL);
	lib->set_info_handler(codec, sb_quiet, NULL);
	opj_dparameters_t params;
	lib->set_default_decoder_parameters(&params);
	if (!lib->setup_decoder(codec, &params)) {
		sb_prefix(r, "cannot set up the decoder");
		lib->destroy_codec(codec);
		return 0;
	}
	// Strict mode refuses a truncated codestream instead of returning a
	// partly decoded image.
	if (lib->decoder_set_strict_mode) lib->decoder_set_strict_mode(codec, OPJ_TRUE);
	opj_stream_t *st = lib->stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE);
	if (!st) {
		sb_prefix(r, "cannot create a stream");
		lib->destroy_codec(codec);
		return 0;
	}
	lib->stream_set_read_function(st, sb_read);
	lib->stream_set_skip_function(st, sb_skip);
	lib->stream_set_seek_function(st, sb_seek);
	lib->stream_set_user_data(st, &mem, NULL);
	lib->stream_set_user_data_length(st, len);

	opj_image_t *img = NULL;
	int ok = 0;
	if (!lib->read_header(st, codec, &img) || !img) {
		sb_prefix(r, "not a valid JPEG 2000 codestream");
	} else if (img->numcomps != 1 || img->x1 - img->x0 != (OPJ_UINT32)cols || img->y1 - img->y0 != (OPJ_UINT32)rows ||
	           img->comps[0].dx != 1 || img->comps[0].dy != 1) {
		char tmp[200];
		snprintf(tmp, sizeof tmp, "the codestream holds a %ux%u image with %u components, the DICOM header says %dx%d with 1",
		         img->x1 - img->x0, img->y1 - img->y0, img->numcomps, cols, rows);
		r->err[0] = 0;
		sb_prefix(r, tmp);
	} else if (!lib->decode(codec, st, img)) {
		sb_prefix(r, "cannot decode the codestream");
	} else if (!lib->end_decompress(codec, st)) {
		sb_prefix(r, "cannot finish decoding the codestream");
	} else if (!img->comps[0].data || img->comps[0].w != (OPJ_UINT32)cols || img->comps[0].h != (OPJ_UINT32)rows) {
		sb_prefix(r, "the decoder returned no image of the declared size");
	} else {
		ok = 1;
	}
	lib->stream_destroy(st);
	lib->destroy_codec(codec);
	if (!ok) {
		if (img) lib->image_destroy(img);
		return 0;
	}
	r->image = img;
	r->data = (const int32_t *)img->comps[0].data;
	r->prec = (int)img->comps[0].prec;
	r->sgnd = (int)img->comps[0].sgnd;
	return 1;
}

static void sb_free(sb_opj *lib, sb_result *r) {
	if (r->image) lib->image_destroy(r->image);
	r->image = NULL;
	r->data = NULL;
}

// Faults for the pool's tests: what a broken decoder does to its process.
static void sb_fault_crash(void) { volatile int *p = NULL; *p = 42; }
static void sb_fault_hang(void) { for (;;) pause(); }
static void sb_fault_spin(void) { volatile unsigned long x = 0; for (;;) x++; }
// sb_fault_alloc allocates until malloc fails, as a decoder told of a huge
// image would, then frees it all so that the child can still answer.
static size_t sb_fault_alloc(void) {
	size_t mib = 0;
	void **last = NULL, **p;
	while ((p = malloc(16 << 20)) != NULL) {
		*p = last;
		last = p;
		mib += 16;
	}
	while (last) {
		p = *last;
		free(last);
		last = p;
	}
	return mib;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/segbridge/segbridge/internal/volume"
)

// openJPEG is a loaded OpenJPEG library.
type openJPEG struct {
	lib *C.sb_opj
}

// loadOpenJPEG dlopens the library at path (a file name is searched for as
// the dynamic linker does).
func loadOpenJPEG(path string) (*openJPEG, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg [512]C.char
	lib := C.sb_load(cpath, &msg[0], C.size_t(len(msg)))
	if lib == nil {
		return nil, errors.New(C.GoString(&msg[0]))
	}
	return &openJPEG{lib: lib}, nil
}

func (o *openJPEG) version() string { return C.GoString(C.sb_version(o.lib)) }

// decode decodes one frame's codestream into dst in the sample layout of r
// (see volume.Frame): the header's BitsStored and HighBit win over the
// codestream's precision and signedness (PS3.5 8.2.4).
func (o *openJPEG) decode(r *request, dst []byte) error {
	if len(r.data) == 0 {
		return errors.New("the frame is empty")
	}
	var res C.sb_result
	ok := C.sb_decode(o.lib, (*C.uint8_t)(unsafe.Pointer(&r.data[0])), C.size_t(len(r.data)),
		C.int(r.rows), C.int(r.cols), &res)
	if ok == 0 {
		return errors.New(C.GoString(&res.err[0]))
	}
	defer C.sb_free(o.lib, &res)
	n := r.rows * r.cols
	vals := unsafe.Slice((*int32)(unsafe.Pointer(res.data)), n)
	volume.PackSamples(vals, dst, r.bitsAllocated, r.bitsStored, r.highBit)
	return nil
}

// fault makes the child misbehave as a broken decoder would; only children
// of a pool built by this package's tests accept fault requests.
func fault(op byte) error {
	switch op {
	case opFaultCrash:
		C.sb_fault_crash()
	case opFaultHang:
		C.sb_fault_hang()
	case opFaultSpin:
		C.sb_fault_spin()
	case opFaultAlloc:
		mib := C.sb_fault_alloc()
		return fmt.Errorf("out of memory after allocating %d MiB", uint64(mib))
	}
	return fmt.Errorf("unknown request %d", op)
}
