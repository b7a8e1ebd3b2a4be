// The tanh and relu ops on the CPU: checks, then the loops of activation_loops.cpp into a new
// output, contiguous or channels-last as the input (kept_format) (cuda/activation.cu is the CUDA twin).
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "../activation.h"
#include "../checks.h"
#include "activation_loops.h"
#include "runtime/block_cache.h"

namespace minidl {
namespace {

at::Tensor forward(const at::Tensor& input, const char* op, Activation act) {
  check_float(input, op, "input");
  TORCH_CHECK(input.device().is_cpu(), op, ": CPU kernel got a tensor on ", input.device());
  const at::NoGradGuard no_grad;  // see ops/linear.cpp: contiguous() would record a graph node
  const at::MemoryFormat format = kept_format(input);
  at::Tensor x = input.contiguous(format);
  at::Tensor y = format == at::MemoryFormat::Contiguous ? cpu::empty_output_like(x) : at::empty_like(x);
  cpu::activation_out(x, y, act);  // a loop over memory: x and y have the same dense strides
  return y;
}

at::Tensor backward(const at::Tensor& grad_output, const at::Tensor& saved, const char* op, Activation act) {
  check_elementwise_backward(grad_output, saved, op, "output");
  TORCH_CHECK(saved.device().is_cpu(), op, ": CPU kernel got a tensor on ", saved.device());
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  const at::MemoryFormat format = kept_format(saved);
  at::Tensor g = grad_output.contiguous(format);
  at::Tensor s = saved.contiguous(format);
  at::Tensor out = format == at::MemoryFormat::Contiguous ? cpu::empty_output_like(s) : at::empty_like(s);
  cpu::activation_backward_out(g, s, out, act);
  return out;
}

at::Tensor tanh_forward(const at::Tensor& input) { return forward(input, "minidl.tanh_forward", Activation::Tanh); }
at::Tensor relu_forward(const at::Tensor& input) { return forward(input, "minidl.relu_forward", Activation::Relu); }

at::Tensor tanh_backward(const at::Tensor& grad_output, const at::Tensor& output) {
  return backward(grad_output, output, "minidl.tanh_backward", Activation::Tanh);
}

at::Tensor relu_backward(const at::Tensor& grad_output, const at::Tensor& output) {
  return backward(grad_output, output, "minidl.relu_backward", Activation::Relu);
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("tanh_forward", &minidl::tanh_forward);
  m.impl("tanh_backward", &minidl::tanh_backward);
  m.impl("relu_forward", &minidl::relu_forward);
  m.impl("relu_backward", &minidl::relu_backward);
}
