//go:build cgo

package codec

// CharLS is loaded with dlopen at run time, not linked, as OpenJPEG is (see
// openjpeg.go): the build needs only the headers of libcharls-dev, and a
// segbridge on a machine without libcharls2 still decodes JPEG 2000, failing
// only the JPEG-LS frames, saying what to install. Each function pointer has
// the header's own prototype (__typeof__). This code runs only in decoder
// child processes.

/*
#cgo CFLAGS: -O2
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <charls/charls.h>

#define SBJ_FN(name) __typeof__(charls_##name) *name

typedef struct {
	void *handle;
	SBJ_FN(get_version_string);
	SBJ_FN(get_error_message);
	SBJ_FN(jpegls_decoder_create);
	SBJ_FN(jpegls_decoder_destroy);
	SBJ_FN(jpegls_decoder_set_source_buffer);
	SBJ_FN(jpegls_decoder_read_header);
	SBJ_FN(jpegls_decoder_get_frame_info);
	SBJ_FN(jpegls_decoder_get_destination_size);
	SBJ_FN(jpegls_decoder_decode_to_buffer);
} sbj_charls;

// sbj_load opens the library at path and finds its functions; on failure it
// returns NULL with a message in err.
static sbj_charls *sbj_load(const char *path, char *err, size_t errlen) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "%s", dlerror());
		return NULL;
	}
	sbj_charls *lib = calloc(1, sizeof *lib);
	if (!lib) {
		snprintf(err, errlen, "out of memory");
		dlclose(h);
		return NULL;
	}
	lib->handle = h;
#define SBJ_LOAD(name) \
	lib->name = (__typeof__(lib->name))dlsym(h, "charls_" #name); \
	if (!lib->name) { \
		snprintf(err, errlen, "%s has no function charls_%s", path, #name); \
		free(lib); dlclose(h); return NULL; \
	}
	SBJ_LOAD(get_version_string)
	SBJ_LOAD(get_error_message)
	SBJ_LOAD(jpegls_decoder_create)
	SBJ_LOAD(jpegls_decoder_destroy)
	SBJ_LOAD(jpegls_decoder_set_source_buffer)
	SBJ_LOAD(jpegls_decoder_read_header)
	SBJ_LOAD(jpegls_decoder_get_frame_info)
	SBJ_LOAD(jpegls_decoder_get_destination_size)
	SBJ_LOAD(jpegls_decoder_decode_to_buffer)
#undef SBJ_LOAD
	return lib;
}

static const char *sbj_version(sbj_charls *lib) { return lib->get_version_string(); }

// sbj_fail writes "what: CharLS's message for rc" into err.
static void sbj_fail(sbj_charls *lib, charls_jpegls_errc rc, const char *what, char *err, size_t errlen) {
	const char *msg = lib->get_error_message(rc);
	snprintf(err, errlen, "%s: %s", what, msg ? msg : "unknown error");
}

// sbj_decode decodes the JPEG-LS codestream src into dst, whose size is the
// most the frame may take: rows x cols samples of 2 bytes. The codestream's
// frame header is checked against the DICOM header (size, one component)
// before anything is decoded, so a codestream cannot make CharLS work on a
// larger image than the header declares. It returns the codestream's bits
// per sample (samples of up to 8 bits take 1 byte in dst, others 2, in the
// machine's byte order), or 0 with a message in err.
static int sbj_decode(sbj_charls *lib, const uint8_t *src, size_t len, int rows, int cols,
                      void *dst, size_t dstlen, char *err, size_t errlen) {
	charls_jpegls_decoder *dec = lib->jpegls_decoder_create();
	if (!dec) {
		snprintf(err, errlen, "cannot create a decoder");
		return 0;
	}
	int bits = 0;
	charls_frame_info fi;
	size_t need = 0;
	charls_jpegls_errc rc = lib->jpegls_decoder_set_source_buffer(dec, src, len);
	if (rc == CHARLS_JPEGLS_ERRC_SUCCESS) rc = lib->jpegls_decoder_read_header(dec);
	if (rc == CHARLS_JPEGLS_ERRC_SUCCESS) rc = lib->jpegls_decoder_get_frame_info(dec, &fi);
	if (rc != CHARLS_JPEGLS_ERRC_SUCCESS) {
		sbj_fail(lib, rc, "not a valid JPEG-LS codestream", err, errlen);
	} else if (fi.component_count != 1 || fi.width != (uint32_t)cols || fi.height != (uint32_t)rows) {
		snprintf(err, errlen, "the codestream holds a %ux%u image with %d components, the DICOM header says %dx%d with 1",
		         fi.width, fi.height, fi.component_count, cols, rows);
	} else if (fi.bits_per_sample < 2 || fi.bits_per_sample > 16) {
		snprintf(err, errlen, "the codestream has %d bits per sample; JPEG-LS allows 2 to 16", fi.bits_per_sample);
	} else if ((rc = lib->jpegls_decoder_get_destination_size(dec, 0, &need)) != CHARLS_JPEGLS_ERRC_SUCCESS) {
		sbj_fail(lib, rc, "cannot size the decoded frame", err, errlen);
	} else if (need != (size_t)rows * (size_t)cols * (fi.bits_per_sample <= 8 ? 1 : 2) || need > dstlen) {
		snprintf(err, errlen, "the decoder wants %zu bytes for a %dx%d frame of %d-bit samples", need, cols, rows, fi.bits_per_sample);
	} else if ((rc = lib->jpegls_decoder_decode_to_buffer(dec, dst, need, 0)) != CHARLS_JPEGLS_ERRC_SUCCESS) {
		sbj_fail(lib, rc, "cannot decode the codestream", err, errlen);
	} else {
		bits = fi.bits_per_sample;
	}
	lib->jpegls_decoder_destroy(dec);
	return bits;
}
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/segbridge/segbridge/internal/volume"
)

// charLS is a loaded CharLS library.
type charLS struct {
	lib     *C.sbj_charls
	samples []byte // decoded samples, before packing; reused
}

// loadCharLS dlopens the library at path (a file name is searched for as
// the dynamic linker does).
func loadCharLS(path string) (*charLS, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg [512]C.char
	lib := C.sbj_load(cpath, &msg[0], C.size_t(len(msg)))
	if lib == nil {
		return nil, errors.New(C.GoString(&msg[0]))
	}
	return &charLS{lib: lib}, nil
}

func (c *charLS) version() string { return C.GoString(C.sbj_version(c.lib)) }

// decode decodes one frame's JPEG-LS codestream into dst in the sample
// layout of r (see volume.Frame). A JPEG-LS codestream has no signedness:
// a signed image is stored as its two's complement bit patterns, so the
// header's BitsStored, HighBit and PixelRepresentation decide how the
// samples read (PS3.5 8.2.4, as for JPEG 2000).
func (c *charLS) decode(r *request, dst []byte) error {
	if len(r.data) == 0 {
		return errors.New("the frame is empty")
	}
	n := r.rows * r.cols
	if cap(c.samples) < 2*n {
		c.samples = make([]byte, 2*n)
	}
	samples := c.samples[:2*n]
	var msg [512]C.char
	bits := C.sbj_decode(c.lib, (*C.uint8_t)(unsafe.Pointer(&r.data[0])), C.size_t(len(r.data)),
		C.int(r.rows), C.int(r.cols), unsafe.Pointer(&samples[0]), C.size_t(len(samples)), &msg[0], C.size_t(len(msg)))
	if bits == 0 {
		return errors.New(C.GoString(&msg[0]))
	}
	if bits <= 8 {
		volume.PackSamples(samples[:n], dst, r.bitsAllocated, r.bitsStored, r.highBit)
	} else {
		volume.PackSamples(unsafe.Slice((*uint16)(unsafe.Pointer(&samples[0])), n), dst, r.bitsAllocated, r.bitsStored, r.highBit)
	}
	return nil
}
