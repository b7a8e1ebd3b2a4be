// Why: a normal store to a line that is not in the cache first reads that line from memory (a read
// for ownership), only to overwrite all of it. For an output far bigger than the caches that read
// is pure waste: tanh or relu backward then moves 16 bytes per element instead of 12. Streaming
// (non-temporal) stores skip it and send whole lines straight to memory. They also keep the output
// out of the cache, so a following op that reads it back (relu backward reads relu's output) pays
// where the output would have stayed cached. Hence only outputs of kDefaultMinBytes or more stream:
// the threshold comes from `python tools/streaming_threshold.py` (its table: docs/streaming_threshold.md).
// tanh's forward does not stream: it is bound by its arithmetic, so streaming gains it nothing.
#include "streaming.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>

#include "../elementwise.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MINIDL_STREAMING_X86 1
#define MINIDL_AVX512 __attribute__((target("avx512f")))
#define MINIDL_AVX2 __attribute__((target("avx2")))
#endif

namespace minidl {
namespace cpu {
namespace {

constexpr int64_t kDefaultMinBytes = int64_t(32) << 20;

enum Isa : int { kNone = 0, kAvx2 = 1, kAvx512 = 2 };

Isa detect_isa() {
#ifdef MINIDL_STREAMING_X86
  __builtin_cpu_init();  // this runs from a static initializer, perhaps before libgcc's own
  if (__builtin_cpu_supports("avx512f")) return kAvx512;
  if (__builtin_cpu_supports("avx2")) return kAvx2;
#endif
  return kNone;
}

const Isa kBestIsa = detect_isa();
std::atomic<int> g_isa{kBestIsa};
std::atomic<int64_t> g_min_bytes{kDefaultMinBytes};
std::atomic<int64_t> g_loops[3] = {{0}, {0}, {0}};  // loop calls per Isa: tests check which loop ran

void count_loop(Isa isa) { g_loops[isa].fetch_add(1, std::memory_order_relaxed); }

const char* isa_name(int isa) { return isa == kAvx512 ? "avx512" : isa == kAvx2 ? "avx2" : "none"; }

int parse_isa(const std::string& name) {
  for (int isa : {kNone, kAvx2, kAvx512})
    if (name == isa_name(isa)) return isa;
  TORCH_CHECK_VALUE(false, "minidl streaming stores: expected isa 'avx512', 'avx2' or 'none', got '", name, "'");
  return kNone;  // not reached: the check throws
}

#ifdef MINIDL_STREAMING_X86

// How many elements to write one by one before out + head is `bytes`-aligned: streaming stores
// write whole aligned vectors. Tensors' data is always float-aligned.
int64_t unaligned_head(const float* out, int64_t n, uintptr_t bytes) {
  const uintptr_t misalign = reinterpret_cast<uintptr_t>(out) % bytes;
  TORCH_INTERNAL_ASSERT(misalign % sizeof(float) == 0, "minidl streaming stores: output not float-aligned");
  const int64_t head = misalign == 0 ? 0 : int64_t((bytes - misalign) / sizeof(float));
  return head < n ? head : n;
}

// The shape of every loop below: scalar(k) writes element k with a normal store, before the first
// aligned vector and after the last whole one; vector(i) writes kLanes elements from i with one
// streaming store. The fence makes those weakly ordered stores visible before the caller (or
// at::parallel_for's join) goes on. Each vector body is its scalar formula one operation at a
// time, so every element gets the same bits on either path. (A lambda does not inherit its
// function's target attribute: the vector lambdas name theirs.)
template <int kLanes, typename Scalar, typename Vector>
MINIDL_INLINE void streaming_loop(Isa isa, float* out, int64_t n, Scalar scalar, Vector vector) {
  count_loop(isa);
  int64_t i = unaligned_head(out, n, kLanes * sizeof(float));
  for (int64_t k = 0; k < i; ++k) scalar(k);
  for (; i + kLanes <= n; i += kLanes) vector(i);
  for (; i < n; ++i) scalar(i);
  _mm_sfence();
}

MINIDL_AVX512 void relu_avx512(const float* x, float* out, int64_t n) {
  streaming_loop<16>(kAvx512, out, n, [&](int64_t k) { out[k] = relu_value(x[k]); }, [&](int64_t i) MINIDL_AVX512 {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __mmask16 negative = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);  // false for NaN
    _mm512_stream_ps(out + i, _mm512_maskz_mov_ps(static_cast<__mmask16>(~negative), v));
  });
}

MINIDL_AVX512 void relu_backward_avx512(const float* g, const float* y, float* out, int64_t n) {
  streaming_loop<16>(kAvx512, out, n, [&](int64_t k) { out[k] = relu_grad(g[k], y[k]); }, [&](int64_t i) MINIDL_AVX512 {
    const __mmask16 blocked = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + i), _mm512_setzero_ps(), _CMP_LE_OQ);
    _mm512_stream_ps(out + i, _mm512_maskz_mov_ps(static_cast<__mmask16>(~blocked), _mm512_loadu_ps(g + i)));
  });
}

MINIDL_AVX512 void tanh_backward_avx512(const float* g, const float* y, float* out, int64_t n) {
  streaming_loop<16>(kAvx512, out, n, [&](int64_t k) { out[k] = tanh_grad(g[k], y[k]); }, [&](int64_t i) MINIDL_AVX512 {
    const __m512 yv = _mm512_loadu_ps(y + i);
    const __m512 slope = _mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_mul_ps(yv, yv));
    _mm512_stream_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(g + i), slope));
  });
}

// The "avx2" loops need only AVX instructions; they are named after the level clones.h targets.
// AVX has no mask registers: a compare gives all-ones lanes, and andnot keeps the others.
MINIDL_AVX2 void relu_avx2(const float* x, float* out, int64_t n) {
  streaming_loop<8>(kAvx2, out, n, [&](int64_t k) { out[k] = relu_value(x[k]); }, [&](int64_t i) MINIDL_AVX2 {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 negative = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ);
    _mm256_stream_ps(out + i, _mm256_andnot_ps(negative, v));
  });
}

MINIDL_AVX2 void relu_backward_avx2(const float* g, const float* y, float* out, int64_t n) {
  streaming_loop<8>(kAvx2, out, n, [&](int64_t k) { out[k] = relu_grad(g[k], y[k]); }, [&](int64_t i) MINIDL_AVX2 {
    const __m256 blocked = _mm256_cmp_ps(_mm256_loadu_ps(y + i), _mm256_setzero_ps(), _CMP_LE_OQ);
    _mm256_stream_ps(out + i, _mm256_andnot_ps(blocked, _mm256_loadu_ps(g + i)));
  });
}

MINIDL_AVX2 void tanh_backward_avx2(const float* g, const float* y, float* out, int64_t n) {
  streaming_loop<8>(kAvx2, out, n, [&](int64_t k) { out[k] = tanh_grad(g[k], y[k]); }, [&](int64_t i) MINIDL_AVX2 {
    const __m256 yv = _mm256_loadu_ps(y + i);
    const __m256 slope = _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_mul_ps(yv, yv));
    _mm256_stream_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), slope));
  });
}

#endif  // MINIDL_STREAMING_X86

}  // namespace

bool stream_output(int64_t bytes) {
  return g_isa.load(std::memory_order_relaxed) != kNone && bytes >= g_min_bytes.load(std::memory_order_relaxed);
}

// With no streaming instruction set (or one just turned off by a test) these write normally.
void relu_stream(const float* x, float* out, int64_t n) {
#ifdef MINIDL_STREAMING_X86
  const int isa = g_isa.load(std::memory_order_relaxed);
  if (isa == kAvx512) return relu_avx512(x, out, n);
  if (isa == kAvx2) return relu_avx2(x, out, n);
#endif
  count_loop(kNone);
  for (int64_t i = 0; i < n; ++i) out[i] = relu_value(x[i]);
}

void relu_backward_stream(const float* g, const float* y, float* out, int64_t n) {
#ifdef MINIDL_STREAMING_X86
  const int isa = g_isa.load(std::memory_order_relaxed);
  if (isa == kAvx512) return relu_backward_avx512(g, y, out, n);
  if (isa == kAvx2) return relu_backward_avx2(g, y, out, n);
#endif
  count_loop(kNone);
  for (int64_t i = 0; i < n; ++i) out[i] = relu_grad(g[i], y[i]);
}

void tanh_backward_stream(const float* g, const float* y, float* out, int64_t n) {
#ifdef MINIDL_STREAMING_X86
  const int isa = g_isa.load(std::memory_order_relaxed);
  if (isa == kAvx512) return tanh_backward_avx512(g, y, out, n);
  if (isa == kAvx2) return tanh_backward_avx2(g, y, out, n);
#endif
  count_loop(kNone);
  for (int64_t i = 0; i < n; ++i) out[i] = tanh_grad(g[i], y[i]);
}

StreamingSetting streaming_setting() { return {isa_name(g_isa.load()), g_min_bytes.load()}; }

int64_t streamed_loops(const std::string& isa) { return g_loops[parse_isa(isa)].load(); }

std::string best_streaming_isa() { return isa_name(kBestIsa); }

StreamingSetting set_streaming(const StreamingSetting& setting) {
  const int isa = parse_isa(setting.isa);
  // Isa values are ordered: a CPU with AVX-512 has AVX2 too.
  TORCH_CHECK_VALUE(isa <= kBestIsa, "minidl streaming stores: this CPU (or build) streams with at most '",
                    isa_name(kBestIsa), "', got '", setting.isa, "'");
  TORCH_CHECK_VALUE(setting.min_bytes >= 0, "minidl streaming stores: expected min_bytes >= 0, got ", setting.min_bytes);
  const StreamingSetting old = streaming_setting();
  g_isa.store(isa);
  g_min_bytes.store(setting.min_bytes);
  return old;
}

}  // namespace cpu
}  // namespace minidl
