// MaxPool2d's ops on the CPU: checks, then the loops of cpu/pool.cpp (cuda/pool.cu is the CUDA twin).
// Outputs keep the input's memory format (NCHW or channels-last), as torch's max_pool2d does.
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "../cpu/pool.h"
#include "../layer_checks.h"

namespace minidl {
namespace {

at::MemoryFormat format_of(const at::Tensor& input) {
  return input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ? at::MemoryFormat::ChannelsLast
                                                                         : at::MemoryFormat::Contiguous;
}

void check_cpu(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.device().is_cpu(), op, ": CPU kernel got a tensor on ", t.device());
}

std::tuple<at::Tensor, at::Tensor> maxpool2d_forward(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                     at::IntArrayRef stride) {
  const char* op = "minidl.maxpool2d_forward";
  const auto shape = check_maxpool2d(input, kernel_size, stride, op);
  check_cpu(input, op);
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  const at::MemoryFormat format = format_of(input);
  // Rows of fewer outputs than a vector holds leave the NCHW loop little to vectorise: then the
  // channels-last loop (vectorised over channels) runs on a transposed copy, and the results are
  // transposed back.
  const bool transposed = format == at::MemoryFormat::Contiguous && shape[3] < 8 && shape[1] >= 8;
  const at::MemoryFormat loop_format = transposed ? at::MemoryFormat::ChannelsLast : format;
  at::Tensor x = input.contiguous(loop_format);
  at::Tensor out = at::empty(shape, x.options().memory_format(loop_format));
  at::Tensor indices = at::empty(shape, x.options().dtype(at::kLong).memory_format(loop_format));
  if (out.numel() > 0) {
    cpu::maxpool2d_forward_out(x, out, indices, {kernel_size[0], kernel_size[1], stride[0], stride[1]},
                               loop_format == at::MemoryFormat::ChannelsLast);
  }
  if (transposed) return {out.contiguous(), indices.contiguous()};
  return {out, indices};
}

at::Tensor maxpool2d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& indices,
                              at::IntArrayRef kernel_size, at::IntArrayRef stride) {
  const char* op = "minidl.maxpool2d_backward";
  check_maxpool2d_backward(grad_output, input, indices, kernel_size, stride, op);
  check_cpu(input, op);
  const at::NoGradGuard no_grad;
  const at::MemoryFormat format = format_of(input);
  at::Tensor grad_input = at::empty(input.sizes(), input.options().memory_format(format));
  if (grad_input.numel() == 0) return grad_input;
  const bool ok = cpu::maxpool2d_backward_out(grad_output.contiguous(format), indices.contiguous(format), grad_input,
                                              format == at::MemoryFormat::ChannelsLast);
  TORCH_CHECK_INDEX(ok, op, ": expected indices in [0, ", input.size(2) * input.size(3), ") for input of shape ",
                    input.sizes(), ", got one outside");
  return grad_input;
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("maxpool2d_forward", &minidl::maxpool2d_forward);
  m.impl("maxpool2d_backward", &minidl::maxpool2d_backward);
}
