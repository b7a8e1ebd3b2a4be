// Float32 elementwise loops that write around the cache (non-temporal stores), for outputs far
// bigger than the caches; they compute exactly what cpu/activation_loops.cpp's loops compute.
#pragma once

#include <cstdint>
#include <string>

namespace minidl {
namespace cpu {

// True when this CPU can stream and a float32 output of `bytes` bytes reaches the threshold
// (tools/streaming_threshold.py measures it: see streaming.cpp).
bool stream_output(int64_t bytes);

// Call these only after stream_output() said yes; x, g, y, out are n floats (out float-aligned,
// as tensors' data is); with the setting turned to "none" meanwhile, they store normally.
void relu_stream(const float* x, float* out, int64_t n);
void relu_backward_stream(const float* g, const float* y, float* out, int64_t n);
void tanh_backward_stream(const float* g, const float* y, float* out, int64_t n);

struct StreamingSetting {
  std::string isa;    // "avx512", "avx2" or "none" (never stream)
  int64_t min_bytes;  // outputs of at least this many bytes stream
};
StreamingSetting streaming_setting();
// For tests: how many loop calls (one per thread's chunk) ran with `isa`'s loops since the library
// loaded ("none": the normal-store fallback inside the functions above).
int64_t streamed_loops(const std::string& isa);
// The best instruction set this CPU and build can stream with.
std::string best_streaming_isa();
// For tests: stream with `isa` (at most best_streaming_isa()) from `min_bytes`; returns the old setting.
StreamingSetting set_streaming(const StreamingSetting& setting);

}  // namespace cpu
}  // namespace minidl
