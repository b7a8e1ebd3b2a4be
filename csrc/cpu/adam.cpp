// Adam's update in one pass per parameter, each element rounded as torch.optim.Adam's ATen ops round it
// (their CPU kernels fuse the multiply-adds of add(alpha=), lerp and addcmul; std::fma does the same here).
// Every element is computed alone, so neither the vector width nor the thread count changes a result.
#if defined(__GNUC__) && !defined(__clang__)
// sqrt of a negative number sets errno unless told otherwise, which keeps the loop from vectorising.
#pragma GCC optimize("no-math-errno")
#endif
#include "adam.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cmath>

#include "runtime/clones.h"
#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

// AdamScalars rounded to the parameter's dtype, as ATen rounds a Python float for a tensor op.
template <typename T>
struct Constants {
  T weight_decay, weight1, beta2, weight2, eps, bias_correction2_sqrt, neg_step_size;
};

// lerp's two forms (ATen's lerp_vec): from the start for weights under 0.5, else from the end.
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

template <typename T, bool kDecay, bool kSmallWeight>
void run(T* p, T* g, T* m, T* v, int64_t n, const Constants<T>& c, bool zero_g) {
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
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
