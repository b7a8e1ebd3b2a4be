// A cache of large freed CPU blocks, the CPU twin of PyTorch's CUDA caching allocator.
//
// Why: glibc serves blocks over 32 MiB with mmap and unmaps them on free, and gives the freed top
// of its heap back once a few MiB are free, so fresh outputs (large ones, and a training step's
// 0.3-2 MiB activations) are page-faulted and zeroed by the kernel again, page by page
// (docs/performance.md has the measurements). Freed blocks kept here, sized in 64 KiB steps under
// 2 MiB and in 2 MiB steps above, those aligned to 2 MiB and advised as transparent huge pages (one
// fault per 2 MiB when they are new), make a training loop's outputs free to allocate.
#include "block_cache.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <mutex>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define MINIDL_HAVE_MMAP 1
#endif

// Under AddressSanitizer (tools/sanitize.sh), blocks are mapped by hand and invisible to it: mark a
// handed-out block's tail past the requested bytes, and every cached block, as unaddressable, so
// that overflows and uses after free in them are still reported.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define MINIDL_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define MINIDL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define MINIDL_POISON(p, n) ((void)(p), (void)(n))
#define MINIDL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace minidl {
namespace cpu {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr int64_t kDefaultLimitMiB = 256;

struct Block {
  void* ptr;
  size_t size;
};

int64_t limit_from_env() {
  const char* mib = std::getenv("MINIDL_CPU_CACHE_MB");
  if (mib == nullptr || *mib == '\0') return kDefaultLimitMiB << 20;
  char* end = nullptr;
  const long long v = std::strtoll(mib, &end, 10);
  if (end != mib && *end == '\0' && v >= 0 && v < (int64_t(1) << 40)) return static_cast<int64_t>(v) << 20;
  TORCH_WARN("minidl: MINIDL_CPU_CACHE_MB must be a whole number of MiB >= 0, got '", mib, "'; using ",
             kDefaultLimitMiB);
  return kDefaultLimitMiB << 20;
}

#ifdef MINIDL_HAVE_MMAP
// `size` bytes (a multiple of 2 MiB) at a 2 MiB boundary, so that whole huge pages can back them.
void* map_block(size_t size) {
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) & ~(uintptr_t(kHugePage) - 1);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + size + kHugePage;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);  // advice only: fine if refused
#endif
  return reinterpret_cast<void*>(aligned);
}

// Blocks under 2 MiB in 64 KiB steps, mapped as they are; larger ones in whole huge pages.
constexpr size_t kSmallStep = size_t(64) << 10;

size_t block_size(size_t n) {
  const size_t step = n < kHugePage ? kSmallStep : kHugePage;
  return (std::max<size_t>(n, 1) + step - 1) & ~(step - 1);
}

void* map_any(size_t size) {
  if (size >= kHugePage) return map_block(size);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void unmap_block(const Block& b) {
  MINIDL_UNPOISON(b.ptr, b.size);  // the address range may be mapped again by someone else
  munmap(b.ptr, b.size);
}

// The block, handed out for n bytes: those addressable, the rest of it not.
c10::DataPtr hand_out(Block* b, size_t n, c10::DeleterFnPtr release) {
  MINIDL_UNPOISON(b->ptr, n);
  MINIDL_POISON(static_cast<char*>(b->ptr) + n, b->size - n);
  return {b->ptr, b, release, c10::Device(c10::DeviceType::CPU)};
}
#endif

class BlockCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
#ifdef MINIDL_HAVE_MMAP
    const size_t size = block_size(n);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (limit_ == 0) return c10::GetDefaultCPUAllocator()->allocate(n);  // the cache is off
      for (auto it = free_.rbegin(); it != free_.rend(); ++it) {  // the most recently freed first
        if ((*it)->size != size) continue;
        Block* b = *it;
        free_.erase(std::next(it).base());
        cached_ -= static_cast<int64_t>(size);
        ++hits_;
        return hand_out(b, n, &BlockCache::release);
      }
      ++misses_;
    }
    void* p = map_any(size);
    if (p == nullptr) {
      empty();  // give the cache back and try once more before reporting
      p = map_any(size);
    }
    TORCH_CHECK_WITH(OutOfMemoryError, p != nullptr, "minidl: could not allocate ", n, " bytes of CPU memory");
    return hand_out(new Block{p, size}, n, &BlockCache::release);
#else
    return c10::GetDefaultCPUAllocator()->allocate(n);
#endif
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  CacheInfo info() {
    std::lock_guard<std::mutex> lock(mu_);
    return {cached_, limit_, hits_, misses_};
  }

  void set_limit(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = bytes;
    trim_locked();
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t limit = limit_;
    limit_ = 0;
    trim_locked();
    limit_ = limit;
  }

  static BlockCache& get() {
    static BlockCache* cache = new BlockCache();  // never destroyed: tensors may be freed at exit
    return *cache;
  }

 private:
  BlockCache() : limit_(limit_from_env()) {}

  static void release(void* ctx) {
    Block* b = static_cast<Block*>(ctx);
    MINIDL_POISON(b->ptr, b->size);
    BlockCache& c = get();
    std::lock_guard<std::mutex> lock(c.mu_);
    c.free_.push_back(b);
    c.cached_ += static_cast<int64_t>(b->size);
    c.trim_locked();
  }

  // Unmaps the least recently freed blocks until the cache is within its limit.
  void trim_locked() {
#ifdef MINIDL_HAVE_MMAP
    while (cached_ > limit_ && !free_.empty()) {
      Block* b = free_.front();
      free_.pop_front();
      cached_ -= static_cast<int64_t>(b->size);
      unmap_block(*b);
      delete b;
    }
#endif
  }

  std::mutex mu_;
  std::deque<Block*> free_;  // least recently freed at the front
  int64_t cached_ = 0;
  int64_t limit_;
  int64_t hits_ = 0, misses_ = 0;
};

}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_INTERNAL_ASSERT(options.device().is_cpu());
  const int64_t numel = c10::multiply_integers(sizes);
  const c10::ScalarType dtype = c10::typeMetaToScalarType(options.dtype());
  const size_t nbytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
  if (nbytes < kCachedMin) return at::empty(sizes, options);
  return at::detail::empty_generic(sizes, &BlockCache::get(), c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
                                   c10::MemoryFormat::Contiguous);
}

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat format) {
  if (format != at::MemoryFormat::ChannelsLast || sizes.size() != 4) return empty_output(sizes, options);
  return empty_output({sizes[0], sizes[2], sizes[3], sizes[1]}, options).permute({0, 3, 1, 2});
}

at::Tensor empty_output_like(const at::Tensor& like) { return empty_output(like.sizes(), like.options()); }

CacheInfo cache_info() { return BlockCache::get().info(); }
void empty_cache() { BlockCache::get().empty(); }
void set_cache_limit(int64_t bytes) { BlockCache::get().set_limit(bytes); }

}  // namespace cpu
}  // namespace minidl
