// Cross-entropy, softmax and the pairwise outer product: the checks, then the CPU loops
// (cpu/classify.cpp) or the CUDA kernels (cuda/classify.cu), which take contiguous tensors.
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "../checks.h"
#include "../cpu/classify.h"
#include "../cpu/runtime/block_cache.h"
#ifdef MINIDL_WITH_CUDA
#include "../cuda/classify.h"
#endif

namespace minidl {
namespace {

#ifdef MINIDL_WITH_CUDA
#define MINIDL_ON_DEVICE(t, call) ((t).is_cpu() ? cpu::call : cuda::call)
#else
#define MINIDL_ON_DEVICE(t, call) cpu::call
#endif

at::Tensor empty_like_device(at::IntArrayRef sizes, const at::Tensor& like) {
  return like.is_cpu() ? cpu::empty_output(sizes, like.options()) : at::empty(sizes, like.options());
}

// The error for targets outside [0, classes), with the range they span.
[[noreturn]] void bad_targets(const at::Tensor& target, int64_t classes, const char* op) {
  auto [lo, hi] = at::aminmax(target);
  TORCH_CHECK_VALUE(false, op, ": expected target values in [0, ", classes, ") for ", classes,
                    " classes, got values in [", lo.item<int64_t>(), ", ", hi.item<int64_t>(), "]");
}

bool targets_in_range(const at::Tensor& target, int64_t classes) {
  const int64_t* t = target.const_data_ptr<int64_t>();
  bool ok = true;
  for (int64_t i = 0, n = target.numel(); i < n; ++i) ok &= t[i] >= 0 && t[i] < classes;
  return ok;
}

// dim within [-ndim, ndim) (a 0-dim tensor counts as one dimension, as in torch), made non-negative.
int64_t wrap_dim(int64_t dim, const at::Tensor& t, const char* op, const char* name) {
  const int64_t ndim = std::max<int64_t>(t.dim(), 1);
  TORCH_CHECK_VALUE(dim >= -ndim && dim < ndim, op, ": expected dim in [", -ndim, ", ", ndim - 1, "] for ", name,
                    " of shape ", t.sizes(), ", got ", dim);
  return dim < 0 ? dim + ndim : dim;
}

// [outer, size, inner]: the sizes before, at and after dim.
std::array<int64_t, 3> around(const at::Tensor& t, int64_t dim) {
  std::array<int64_t, 3> s{1, 1, 1};
  for (int64_t d = 0; d < t.dim(); ++d) s[d < dim ? 0 : d == dim ? 1 : 2] *= t.size(d);
  return s;
}

void check_pair_input(const at::Tensor& input, const char* op) {
  check_float(input, op, "input");
  TORCH_CHECK_VALUE(input.dim() == 3 && input.size(1) == 2, op, ": expected input of shape [N, 2, K], got ",
                    input.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> cross_entropy_forward(const at::Tensor& logits, const at::Tensor& target) {
  const char* op = "minidl.cross_entropy_forward";
  check_float(logits, op, "logits");
  check_dim(logits, 2, op, "logits");
  TORCH_CHECK(target.device() == logits.device(), op, ": expected target on ", logits.device(), " like logits, got ",
              target.device());
  TORCH_CHECK_TYPE(target.scalar_type() == at::kLong, op, ": expected target to be int64 class indices, got ",
                   target.scalar_type());
  check_shape(target, {logits.size(0)}, op, "target");
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  at::Tensor x = logits.contiguous(), t = target.contiguous();
  const int64_t classes = x.size(1);
  if (x.is_cpu() && !targets_in_range(t, classes)) bad_targets(t, classes, op);  // before any indexed read
  at::Tensor loss = empty_like_device({}, x);
  at::Tensor grad = empty_like_device(x.sizes(), x);
#ifdef MINIDL_WITH_CUDA
  if (!x.is_cpu() && !cuda::cross_entropy_out(x, t, loss, grad)) bad_targets(t, classes, op);
#endif
  if (x.is_cpu()) cpu::cross_entropy_out(x, t, loss, grad);
  return {loss, grad};
}

at::Tensor softmax_forward(const at::Tensor& input, int64_t dim) {
  const char* op = "minidl.softmax_forward";
  check_float(input, op, "input");
  dim = wrap_dim(dim, input, op, "input");
  const at::NoGradGuard no_grad;
  at::Tensor x = input.contiguous();
  at::Tensor y = empty_like_device(x.sizes(), x);
  const auto [outer, size, inner] = around(x, dim);
  MINIDL_ON_DEVICE(x, softmax_out(x, y, outer, size, inner));
  return y;
}

at::Tensor softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim) {
  const char* op = "minidl.softmax_backward";
  check_elementwise_backward(grad_output, output, op, "output");
  dim = wrap_dim(dim, output, op, "output");
  const at::NoGradGuard no_grad;
  at::Tensor g = grad_output.contiguous(), y = output.contiguous();
  at::Tensor out = empty_like_device(y.sizes(), y);
  const auto [outer, size, inner] = around(y, dim);
  MINIDL_ON_DEVICE(y, softmax_backward_out(g, y, out, outer, size, inner));
  return out;
}

at::Tensor pair_outer_forward(const at::Tensor& input) {
  const char* op = "minidl.pair_outer_forward";
  check_pair_input(input, op);
  const at::NoGradGuard no_grad;
  at::Tensor x = input.contiguous();
  at::Tensor out = empty_like_device({x.size(0), x.size(2), x.size(2)}, x);
  MINIDL_ON_DEVICE(x, pair_outer_out(x, out));
  return out;
}

at::Tensor pair_outer_backward(const at::Tensor& grad_output, const at::Tensor& input) {
  const char* op = "minidl.pair_outer_backward";
  check_pair_input(input, op);
  check_like(grad_output, input, op, "grad_output", "input");
  check_shape(grad_output, {input.size(0), input.size(2), input.size(2)}, op, "grad_output");
  const at::NoGradGuard no_grad;
  at::Tensor g = grad_output.contiguous(), x = input.contiguous();
  at::Tensor out = empty_like_device(x.sizes(), x);
  MINIDL_ON_DEVICE(x, pair_outer_backward_out(g, x, out));
  return out;
}

}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("cross_entropy_forward", &minidl::cross_entropy_forward);
  m.impl("softmax_forward", &minidl::softmax_forward);
  m.impl("softmax_backward", &minidl::softmax_backward);
  m.impl("pair_outer_forward", &minidl::pair_outer_forward);
  m.impl("pair_outer_backward", &minidl::pair_outer_backward);
}

#ifdef MINIDL_WITH_CUDA
TORCH_LIBRARY_IMPL(minidl, CUDA, m) {
  m.impl("cross_entropy_forward", &minidl::cross_entropy_forward);
  m.impl("softmax_forward", &minidl::softmax_forward);
  m.impl("softmax_backward", &minidl::softmax_backward);
  m.impl("pair_outer_forward", &minidl::pair_outer_forward);
  m.impl("pair_outer_backward", &minidl::pair_outer_backward);
}
#endif
