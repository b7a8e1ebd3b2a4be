// Conv2d by Winograd's F(2x2, 3x3) on the CPU (ops/conv.cpp chooses it): the tile transforms of
// cpu/winograd.cpp around 16 matrix products through ATen, a chunk of images at a time.
#include <ATen/core/Tensor.h>
#include <ATen/ops/bmm.h>

#include <algorithm>

#include "../conv.h"
#include "../cpu/runtime/block_cache.h"

namespace minidl {
namespace {

// A contiguous [16, rows, cols] view of the start of buffer.
at::Tensor planes(at::Tensor& buffer, int64_t rows, int64_t cols) {
  return buffer.narrow(0, 0, 16 * rows * cols).view({16, rows, cols});
}

}  // namespace

void winograd_forward(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                      const ConvShape& s, int64_t chunk, at::Tensor& rows) {
  const int64_t tiles = (s.oh / 2) * (s.ow / 2);
  const int64_t most = std::min(chunk, s.n) * tiles;
  at::Tensor U = cpu::empty_output({16, s.c, s.o}, weight.options());
  cpu::winograd_weight(weight, U);
  at::Tensor v = cpu::empty_output({16 * most * s.c}, weight.options());
  at::Tensor m = cpu::empty_output({16 * most * s.o}, weight.options());
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    ConvShape part = s;
    part.n = std::min(chunk, s.n - n0);
    at::Tensor V = planes(v, part.n * tiles, s.c), M = planes(m, part.n * tiles, s.o);
    at::Tensor part_rows = rows.narrow(0, n0 * s.oh * s.ow, part.positions());
    cpu::winograd_input(input.narrow(0, n0, part.n), part, V);
    at::bmm_out(M, V, U);
    cpu::winograd_output(M, part, bias, part_rows);
  }
}

void winograd_backward(const at::Tensor& rows, const at::Tensor& input, const at::Tensor& weight,
                       at::Tensor& grad_weight, const ConvShape& s, int64_t chunk, at::Tensor& grad_input) {
  const int64_t tiles = (s.oh / 2) * (s.ow / 2);
  const int64_t most = std::min(chunk, s.n) * tiles;
  at::Tensor U;
  if (grad_input.defined()) {
    U = cpu::empty_output({16, s.c, s.o}, weight.options());
    cpu::winograd_weight(weight, U);
  }
  at::Tensor v = cpu::empty_output({16 * most * s.c}, weight.options());
  at::Tensor dm = cpu::empty_output({16 * most * s.o}, weight.options());
  at::Tensor dU = cpu::empty_output({16, s.c, s.o}, weight.options());  // summed over the chunks in order
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    ConvShape part = s;
    part.n = std::min(chunk, s.n - n0);
    at::Tensor V = planes(v, part.n * tiles, s.c), dM = planes(dm, part.n * tiles, s.o);
    cpu::winograd_grad_output(rows.narrow(0, n0 * s.oh * s.ow, part.positions()), part, dM);
    cpu::winograd_input(input.narrow(0, n0, part.n), part, V);
    if (n0 == 0) {
      at::bmm_out(dU, V.transpose(1, 2), dM);
    } else {
      dU.baddbmm_(V.transpose(1, 2), dM);
    }
    if (!grad_input.defined()) continue;
    at::Tensor dV = V;  // V is not needed again: its buffer takes dV
    at::bmm_out(dV, dM, U.transpose(1, 2));
    at::Tensor part_grad = grad_input.narrow(0, n0, part.n);
    cpu::winograd_grad_input(dV, part, part_grad);
  }
  cpu::winograd_grad_weight(dU, grad_weight);
}

}  // namespace minidl
