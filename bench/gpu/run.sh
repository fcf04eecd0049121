#!/bin/bash
# The GPU run of ep_harness on the device machine: the CUDA plugin EP's
# pieces and base/ (libonnxruntime 1.29, the models) were copied to $G first.
G=/tmp/gs
cd $G || exit 1
cat part0 part1 part2 part3 part4 part5 | xz -d -T0 > libonnxruntime_providers_cuda.so || exit 1
xz -d -c base/libonnxruntime.so.xz > libonnxruntime.so
cp base/libonnxruntime_providers_shared.so .
NV=$(python3 -c 'import nvidia,os;print(list(nvidia.__path__)[0])')
export LD_LIBRARY_PATH=$G:$(ls -d $NV/*/lib | paste -sd:)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for m in mindgrab model5_gw_ae; do
  echo "===== $m CUDA plugin EP, 256^3 input, 6 runs in one session"
  ./h ./libonnxruntime.so ./libonnxruntime_providers_cuda.so base/models/$m.onnx 6
done
echo "===== mindgrab CPU EP (16 cores), 2 runs"
./h ./libonnxruntime.so - base/models/mindgrab.onnx 2
nvidia-smi --query-gpu=memory.used --format=csv,noheader
