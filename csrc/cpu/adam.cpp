// Adam's update in one pass per parameter, each element rounded as torch.optim.Adam's ATen ops round it
// (their CPU kernels fuse the multiply-adds of add(alpha=), lerp and addcmul; fma does the same here), but
// with a correctly rounded square root. Every element is computed alone, by IEEE operations that round
// the same in a vector register as in a scalar one: neither the vector width nor the thread count
// changes a result.
#include "adam.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cmath>

#include "runtime/clones.h"
#include "runtime/grain.h"

// The vector loop is written with AVX2 intrinsics: the compiler won't vectorise std::sqrt by itself, as
// it may set errno.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#include <immintrin.h>
#define MINIDL_ADAM_AVX2 1
#define MINIDL_AVX2 __attribute__((target("avx2,fma")))
#define MINIDL_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline
#endif

namespace minidl {
namespace cpu {
namespace {

// AdamScalars rounded to the parameter's dtype, as ATen rounds a Python float for a tensor op.
template <typename T>
struct Constants {
  T weight_decay, weight1, beta2, weight2, eps, bias_correction2_sqrt, neg_step_size;
};

// The scalar loop: the tail of the vector loop, and the whole of it on CPUs without AVX2. lerp has two
// forms (ATen's lerp_vec): from the start for weights under 0.5, else from the end.
template <typename T, bool kDecay, bool kSmallWeight>
MINIDL_CLONES void adam_loop(T* p, T* g, T* m, T* v, int64_t n, Constants<T> c, bool zero_g) {
  for (int64_t i = 0; i < n; ++i) {
    const T grad = kDecay ? std::fma(c.weight_decay, p[i], g[i]) : g[i];  // grad.add(param, alpha=wd)
    const T diff = grad - m[i];
    const T avg = kSmallWeight ? std::fma(c.weight1, diff, m[i]) : std::fma(c.weight1 - T(1), diff, grad);
    const T avg_sq = std::fma(c.weight2 * grad, grad, v[i] * c.beta2);  // mul_(beta2).addcmul_(g, g, 1 - beta2)
    const T denom = std::sqrt(avg_sq) / c.bias_correction2_sqrt + c.eps;
    m[i] = avg;
    v[i] = avg_sq;
    p[i] = p[i] + c.neg_step_size * avg / denom;  // addcdiv_(exp_avg, denom, value=-step_size)
    if (zero_g) g[i] = T(0);  // the line is in cache already: cheaper than a later pass
  }
}

#ifdef MINIDL_ADAM_AVX2
template <typename T>
struct Avx2;

template <>
struct Avx2<float> {
  using V = __m256;
  static constexpr int64_t width = 8;
  static MINIDL_AVX2_INLINE V set(float x) { return _mm256_set1_ps(x); }
  static MINIDL_AVX2_INLINE V load(const float* p) { return _mm256_loadu_ps(p); }
  static MINIDL_AVX2_INLINE void store(float* p, V x) { _mm256_storeu_ps(p, x); }
  static MINIDL_AVX2_INLINE V add(V a, V b) { return _mm256_add_ps(a, b); }
  static MINIDL_AVX2_INLINE V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static MINIDL_AVX2_INLINE V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static MINIDL_AVX2_INLINE V div(V a, V b) { return _mm256_div_ps(a, b); }
  static MINIDL_AVX2_INLINE V sqrt(V a) { return _mm256_sqrt_ps(a); }
  static MINIDL_AVX2_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
};

template <>
struct Avx2<double> {
  using V = __m256d;
  static constexpr int64_t width = 4;
  static MINIDL_AVX2_INLINE V set(double x) { return _mm256_set1_pd(x); }
  static MINIDL_AVX2_INLINE V load(const double* p) { return _mm256_loadu_pd(p); }
  static MINIDL_AVX2_INLINE void store(double* p, V x) { _mm256_storeu_pd(p, x); }
  static MINIDL_AVX2_INLINE V add(V a, V b) { return _mm256_add_pd(a, b); }
  static MINIDL_AVX2_INLINE V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static MINIDL_AVX2_INLINE V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static MINIDL_AVX2_INLINE V div(V a, V b) { return _mm256_div_pd(a, b); }
  static MINIDL_AVX2_INLINE V sqrt(V a) { return _mm256_sqrt_pd(a); }
  static MINIDL_AVX2_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
};

// adam_loop's arithmetic, operation for operation, a vector at a time; returns how many elements it did.
template <typename T, bool kDecay, bool kSmallWeight>
MINIDL_AVX2 int64_t adam_loop_avx2(T* p, T* g, T* m, T* v, int64_t n, Constants<T> c, bool zero_g) {
  using A = Avx2<T>;
  using V = typename A::V;
  const V weight_decay = A::set(c.weight_decay), weight1 = A::set(kSmallWeight ? c.weight1 : c.weight1 - T(1));
  const V beta2 = A::set(c.beta2), weight2 = A::set(c.weight2), eps = A::set(c.eps);
  const V bias_correction2_sqrt = A::set(c.bias_correction2_sqrt), neg_step_size = A::set(c.neg_step_size);
  int64_t i = 0;
  for (; i + A::width <= n; i += A::width) {
    const V param = A::load(p + i), exp_avg = A::load(m + i);
    const V grad = kDecay ? A::fma(weight_decay, param, A::load(g + i)) : A::load(g + i);
    const V diff = A::sub(grad, exp_avg);
    const V avg = A::fma(weight1, diff, kSmallWeight ? exp_avg : grad);
    const V avg_sq = A::fma(A::mul(weight2, grad), grad, A::mul(A::load(v + i), beta2));
    const V denom = A::add(A::div(A::sqrt(avg_sq), bias_correction2_sqrt), eps);
    A::store(m + i, avg);
    A::store(v + i, avg_sq);
    A::store(p + i, A::add(param, A::div(A::mul(neg_step_size, avg), denom)));
    if (zero_g) A::store(g + i, A::set(T(0)));
  }
  return i;
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

template <typename T, bool kDecay, bool kSmallWeight>
void run(T* p, T* g, T* m, T* v, int64_t n, const Constants<T>& c, bool zero_g) {
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    int64_t done = 0;
#ifdef MINIDL_ADAM_AVX2
    if (has_avx2()) done = adam_loop_avx2<T, kDecay, kSmallWeight>(p + b, g + b, m + b, v + b, e - b, c, zero_g);
#endif
    b += done;
    adam_loop<T, kDecay, kSmallWeight>(p + b, g + b, m + b, v + b, e - b, c, zero_g);
  });
}

}  // namespace

void adam_step_contiguous(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                          const at::Tensor& exp_avg_sq, const AdamScalars& s, bool zero_grad) {
  AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "minidl_adam", [&] {
    using T = scalar_t;
    const Constants<T> c{static_cast<T>(s.weight_decay), static_cast<T>(s.weight1),
                         static_cast<T>(s.beta2),        static_cast<T>(s.weight2),
                         static_cast<T>(s.eps),          static_cast<T>(s.bias_correction2_sqrt),
                         static_cast<T>(s.neg_step_size)};
    T* p = param.mutable_data_ptr<T>();
    // const_data_ptr unless we write: a copy-on-write gradient then stays shared.
    T* g = zero_grad ? grad.mutable_data_ptr<T>() : const_cast<T*>(grad.const_data_ptr<T>());
    T* m = exp_avg.mutable_data_ptr<T>();
    T* v = exp_avg_sq.mutable_data_ptr<T>();
    const int64_t n = param.numel();
    const bool decay = c.weight_decay != T(0);
    const bool small = std::abs(c.weight1) < T(0.5);
    if (decay && small) run<T, true, true>(p, g, m, v, n, c, zero_grad);
    else if (decay) run<T, true, false>(p, g, m, v, n, c, zero_grad);
    else if (small) run<T, false, true>(p, g, m, v, n, c, zero_grad);
    else run<T, false, false>(p, g, m, v, n, c, zero_grad);
  });
}

}  // namespace cpu
}  // namespace minidl
