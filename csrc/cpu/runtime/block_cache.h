// Uninitialised CPU outputs for minidl's kernels; large ones come from a cache of freed blocks.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>

namespace minidl {
namespace cpu {

// Like at::empty(sizes, options) on the CPU, contiguous; blocks of >= kCachedMin bytes are cached.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);
// Like at::empty(sizes, options.memory_format(format)) on the CPU for [N, C, H, W] sizes, from the cache when large.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat format);
// A contiguous tensor of like's shape, dtype and device.
at::Tensor empty_output_like(const at::Tensor& like);

constexpr size_t kCachedMin = size_t(256) << 10;  // smaller blocks: glibc keeps and reuses them itself

struct CacheInfo {
  int64_t cached_bytes, limit_bytes, hits, misses;
};
CacheInfo cache_info();
// Returns every cached block to the operating system.
void empty_cache();
// At most `bytes` (>= 0) of freed blocks are kept (0 turns the cache off); the excess is released at once.
void set_cache_limit(int64_t bytes);

}  // namespace cpu
}  // namespace minidl
