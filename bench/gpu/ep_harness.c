// ep_harness times one ONNX model on ONNX Runtime with the CUDA plugin
// execution provider (or the CPU, given "-"), on a 256^3 input, REPS runs in
// one session. It measured the GPU figures in the closing note of issues
// 9-13: segbridge's own CUDA path uses ONNX Runtime's legacy CUDA API, which
// needs a CUDA-enabled libonnxruntime, while the only CUDA build at hand was
// ORT 1.29's plugin EP beside a CPU libonnxruntime.
//
// Build: gcc -O2 -o h ep_harness.c -ldl -I<dir with onnxruntime_c_api.h and
// onnxruntime_ep_c_api.h> (onnxruntime_go's module folder has both).
// usage: h LIBORT CUDA_PLUGIN|- MODEL REPS   (run.sh shows a whole run)
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "onnxruntime_c_api.h"
static const OrtApi* api;
static void chk(OrtStatus* s, const char* what) {
  if (s) { fprintf(stderr, "%s: %s\n", what, api->GetErrorMessage(s)); exit(1); }
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
int main(int argc, char** argv) {
  if (argc < 5) { fprintf(stderr, "usage\n"); return 2; }
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
  const OrtApiBase* (*base)(void) = (const OrtApiBase* (*)(void))dlsym(h, "OrtGetApiBase");
  api = base()->GetApi(ORT_API_VERSION);
  printf("ORT %s\n", base()->GetVersionString());
  OrtEnv* env; chk(api->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "h", &env), "env");
  OrtSessionOptions* so; chk(api->CreateSessionOptions(&so), "opts");
  if (strcmp(argv[2], "-") != 0) {
    chk(api->RegisterExecutionProviderLibrary(env, "CUDA", argv[2]), "register");
    const OrtEpDevice* const* devs; size_t n;
    chk(api->GetEpDevices(env, &devs, &n), "devices");
    const OrtEpDevice* cuda = NULL;
    for (size_t i = 0; i < n; i++) {
      printf("ep device %zu: %s\n", i, api->EpDevice_EpName(devs[i]));
      if (strstr(api->EpDevice_EpName(devs[i]), "CUDA")) cuda = devs[i];
    }
    if (!cuda) { fprintf(stderr, "no CUDA ep device\n"); return 1; }
    chk(api->SessionOptionsAppendExecutionProvider_V2(so, env, &cuda, 1, NULL, NULL, 0), "append");
  }
  double t0 = now();
  OrtSession* s; chk(api->CreateSession(env, argv[3], so, &s), "session");
  printf("session %.1f ms\n", now() - t0);
  OrtAllocator* al; chk(api->GetAllocatorWithDefaultOptions(&al), "alloc");
  char *in, *out; chk(api->SessionGetInputName(s, 0, al, &in), "in"); chk(api->SessionGetOutputName(s, 0, al, &out), "out");
  int64_t shape[5] = {1, 1, 256, 256, 256}; size_t nel = 256 * 256 * 256;
  float* x = malloc(nel * sizeof(float)); srand(1);
  for (size_t i = 0; i < nel; i++) x[i] = (float)rand() / RAND_MAX;
  OrtMemoryInfo* mi; chk(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mi), "mi");
  OrtValue* xv = NULL; chk(api->CreateTensorWithDataAsOrtValue(mi, x, nel * sizeof(float), shape, 5, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &xv), "tensor");
  int reps = atoi(argv[4]);
  for (int r = 0; r < reps; r++) {
    OrtValue* y = NULL; const char* ins[1] = {in}; const char* outs[1] = {out};
    double t = now();
    chk(api->Run(s, NULL, ins, (const OrtValue* const*)&xv, 1, outs, 1, &y), "run");
    printf("run %d: %.1f ms (output to host included)\n", r + 1, now() - t);
    api->ReleaseValue(y);
  }
  return 0;
}
