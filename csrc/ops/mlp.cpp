// A whole stack of Linear(+activation) layers, forward or backward, in one call: what
// minidl.Sequential runs when it holds only Linear, ReLU and Tanh modules. One call instead of
// one per module removes the per-call cost that dominates small networks. The same code serves
// CPU and CUDA: matrix products through ATen; bias and activation fused into one pass on the
// CPU, else through the registered minidl ops (the CUDA kernels).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/mm.h>
#include <ATen/Parallel.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include <initializer_list>

#include "../activation.h"
#include "../checks.h"
#include "../dispatch.h"
#include "../cpu/activation_loops.h"
#include "../cpu/runtime/block_cache.h"
#include "../cpu/runtime/grain.h"
#include "../cpu/small_linear.h"

namespace minidl {
namespace {

using UnaryOp = at::Tensor(const at::Tensor&);
using BinaryOp = at::Tensor(const at::Tensor&, const at::Tensor&);

// act(y) off the CPU, through the registered op (the CUDA kernel).
at::Tensor activate(const at::Tensor& y, Activation act) {
  if (act == Activation::None) return y;
  static auto tanh_op = typed_op<UnaryOp>("minidl::tanh_forward");
  static auto relu_op = typed_op<UnaryOp>("minidl::relu_forward");
  return (act == Activation::Tanh ? tanh_op : relu_op).call(y);
}

// grad * act'(y); overwrites grad when the caller owns it.
at::Tensor activate_backward(const at::Tensor& grad, const at::Tensor& y, Activation act, bool grad_is_ours) {
  if (act == Activation::None) return grad;
  if (y.is_cpu() && y.is_contiguous() && grad.is_contiguous()) {
    at::Tensor out = grad_is_ours ? grad : cpu::empty_output_like(y);
    cpu::activation_backward_out(grad, y, out, act);
    return out;
  }
  static auto tanh_op = typed_op<BinaryOp>("minidl::tanh_backward");
  static auto relu_op = typed_op<BinaryOp>("minidl::relu_backward");
  return (act == Activation::Tanh ? tanh_op : relu_op).call(grad, y);
}

// grad_bias += grad.sum(0). Up to kRowByRow rows, a direct loop adds the rows one after another,
// as the small-layer loops and a GEMM's inner products do, without a temporary. Beyond, ATen's sum,
// which adds in a cascade: row after row, a float32 sum of 2e7 ones would stop at 2^24.
constexpr int64_t kRowByRow = 8192;

// Whether add_column_sums_ takes the direct loop, which adds grad's rows in order.
bool adds_rows_in_order(const at::Tensor& grad_bias, const at::Tensor& grad) {
  return grad.is_cpu() && grad.is_contiguous() && grad_bias.is_contiguous() && grad.size(0) <= kRowByRow;
}

void add_column_sums_(at::Tensor& grad_bias, const at::Tensor& grad) {
  if (!adds_rows_in_order(grad_bias, grad)) {
    grad_bias.add_(grad.sum(0));
    return;
  }
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "minidl_column_sums", [&] {
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    scalar_t* b = grad_bias.mutable_data_ptr<scalar_t>();
    const int64_t rows = grad.size(0), cols = grad.size(1);
    // Columns split across threads, each thread walking every row of its columns.
    at::parallel_for(0, cols, cpu::grain_for(rows), [&](int64_t c0, int64_t c1) {
      for (int64_t r = 0; r < rows; ++r) {
        const scalar_t* row = g + r * cols;
        for (int64_t c = c0; c < c1; ++c) b[c] += row[c];
      }
    });
  });
}

// Whether the activation's backward pass can add g's rows into grad_bias as it goes, with the bits
// of the two passes it replaces: add_column_sums_ would add the rows in order, and grad_bias shares
// no memory with what the layer reads or writes before its column sums (mlp_backward's checks).
// Not where activate_backward would stream a new output: for outputs that big streaming pays more.
bool fuses_column_sums(Activation act, const at::Tensor& g, const at::Tensor& y, const at::Tensor& grad_bias,
                       bool g_is_ours) {
  return act != Activation::None && adds_rows_in_order(grad_bias, g) && y.is_contiguous() &&
         (g_is_ours || !cpu::new_output_streams(y));
}

bool all_contiguous(std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts)
    if (!t->is_contiguous()) return false;
  return true;
}

// bias_name: what the biases are called in messages (grad_bias in mlp_backward).
void check_stack(const at::Tensor& input, at::TensorList weights, at::TensorList biases, at::IntArrayRef activations,
                 const char* op, const char* bias_name = "bias") {
  TORCH_CHECK_VALUE(!weights.empty(), op, ": expected at least one layer");
  TORCH_CHECK_VALUE(biases.size() == weights.size() && activations.size() == weights.size(), op,
                    ": expected as many ", bias_name, "es and activations as weights (", weights.size(), "), got ",
                    biases.size(), " ", bias_name, "es and ", activations.size(), " activations");
  check_linear(input, weights[0], Indexed{op, "layer", 0});
  for (size_t i = 0; i < weights.size(); ++i) {
    const Indexed name{op, "layer", i};
    check_float(weights[i], name, "weight");
    check_like(weights[i], weights[0], name, "weight", "the first weight");
    check_dim(weights[i], 2, name, "weight");
    if (i > 0) {
      TORCH_CHECK_VALUE(weights[i].size(1) == weights[i - 1].size(0), name, ": expected weight of shape [*, ",
                        weights[i - 1].size(0), "] after a layer of ", weights[i - 1].size(0), " outputs, got ",
                        weights[i].sizes());
    }
    check_like(biases[i], weights[i], name, bias_name, "weight");
    check_shape(biases[i], {weights[i].size(0)}, name, bias_name);
    to_activation(activations[i], name);
  }
}

}  // namespace

std::vector<at::Tensor> mlp_forward(const at::Tensor& input, at::TensorList weights, at::TensorList biases,
                                    at::IntArrayRef activations) {
  check_stack(input, weights, biases, activations, "minidl.mlp_forward");
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  std::vector<at::Tensor> outputs;
  outputs.reserve(weights.size());
  at::Tensor x = input;
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor &W = weights[i], &b = biases[i];
    const auto act = static_cast<Activation>(activations[i]);
    if (x.is_cpu()) {
      at::Tensor y = cpu::empty_output({x.size(0), W.size(0)}, W.options());
      if (all_contiguous({&x, &W, &b}) && cpu::small_linear_pays(x.size(0), W.size(1), W.size(0))) {
        cpu::small_linear_forward(x, W, b, y, act);
      } else {
        at::mm_out(y, x, W.t());  // then bias and activation in one pass over y
        cpu::bias_activation_(y, b.contiguous(), act);
      }
      x = y;
    } else {
      x = activate(at::addmm(b, x, W.t()), act);
    }
    outputs.push_back(x);
  }
  return outputs;
}

void mlp_backward(const at::Tensor& grad_output, const at::Tensor& input, at::TensorList outputs,
                  at::TensorList weights, at::TensorList grad_weights, at::TensorList grad_biases,
                  at::IntArrayRef activations, const c10::optional<at::Tensor>& grad_input) {
  const char* op = "minidl.mlp_backward";
  check_stack(input, weights, grad_biases, activations, op, "grad_bias");
  const size_t n = weights.size();
  TORCH_CHECK_VALUE(outputs.size() == n && grad_weights.size() == n, op, ": expected ", n,
                    " outputs and grad_weights, got ", outputs.size(), " and ", grad_weights.size());
  for (size_t i = 0; i < n; ++i) {
    const Indexed name{op, "layer", i};
    check_like(outputs[i], weights[i], name, "output", "weight");
    check_shape(outputs[i], {input.size(0), weights[i].size(0)}, name, "output");
    check_like(grad_weights[i], weights[i], name, "grad_weight", "weight");
    check_shape(grad_weights[i], weights[i].sizes(), name, "grad_weight");
  }
  check_like(grad_output, weights[n - 1], op, "grad_output", "the last weight");
  check_shape(grad_output, outputs[n - 1].sizes(), op, "grad_output");
  c10::SmallVector<Named, 8> read{{&grad_output, "grad_output"}, {&input, "input"}}, written;
  for (size_t i = 0; i < n; ++i) {
    const auto k = static_cast<int64_t>(i);
    read.append({{&outputs[i], "outputs", k}, {&weights[i], "weights", k}});
    written.append({{&grad_weights[i], "grad_weights", k}, {&grad_biases[i], "grad_biases", k}});
  }
  // Layers add into their gradients one after another, so two layers' may share memory (one layer applied twice).
  for (size_t i = 0; i < n; ++i) {
    check_written(grad_weights[i], op, written[2 * i]);
    check_written(grad_biases[i], op, written[2 * i + 1]);
    check_apart({written[2 * i], written[2 * i + 1]}, read, op);
  }
  if (grad_input.has_value()) {
    check_like(*grad_input, weights[0], op, "grad_input", "the first weight");
    check_shape(*grad_input, input.sizes(), op, "grad_input");
    check_written(*grad_input, op, "grad_input");
    read.append(written.begin(), written.end());  // nor with a gradient: layer 0's are written with it
    check_apart({{&*grad_input, "grad_input"}}, read, op);
  }
  const at::NoGradGuard no_grad;  // see ops/linear.cpp

  at::Tensor g = grad_output;
  bool ours = false;  // whether g is a temporary of ours that may be overwritten
  for (size_t k = n; k-- > 0;) {
    const at::Tensor &y = outputs[k], &W = weights[k];
    const at::Tensor& x = k > 0 ? outputs[k - 1] : input;
    at::Tensor gw = grad_weights[k], gb = grad_biases[k];
    const auto act = static_cast<Activation>(activations[k]);
    const bool want_gx = k > 0 || grad_input.has_value();
    if (x.is_cpu() && all_contiguous({&g, &y, &x, &W, &gw, &gb}) &&
        cpu::small_linear_pays(x.size(0), W.size(1), W.size(0))) {
      if (!ours && act != Activation::None) g = g.clone();
      at::Tensor gx;
      if (want_gx) gx = (k == 0 && grad_input->is_contiguous()) ? *grad_input : cpu::empty_output(x.sizes(), x.options());
      cpu::small_linear_backward(g, y, x, W, gw, gb, gx, act);
      if (k == 0 && want_gx && !gx.is_same(*grad_input)) {
        at::Tensor out = *grad_input;
        out.copy_(gx);
      }
      g = gx;
      ours = true;
      continue;
    }
    const bool fused = fuses_column_sums(act, g, y, gb, ours);
    if (fused) {
      at::Tensor out = ours ? g : cpu::empty_output_like(y);
      cpu::activation_backward_column_sums_(g, y, out, act, gb);  // one pass over g instead of two
      g = out;
    } else {
      g = activate_backward(g, y, act, ours);
    }
    ours = ours || act != Activation::None;
    gw.addmm_(g.t(), x);
    if (!fused) add_column_sums_(gb, g);
    if (k > 0) {
      g = at::mm(g, W);
      ours = true;
    } else if (grad_input.has_value()) {
      at::Tensor out = *grad_input;
      at::mm_out(out, g, W);
    }
  }
}

}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("mlp_forward", &minidl::mlp_forward);
  m.impl("mlp_backward", &minidl::mlp_backward);
}

TORCH_LIBRARY_IMPL(minidl, CUDA, m) {
  m.impl("mlp_forward", &minidl::mlp_forward);
  m.impl("mlp_backward", &minidl::mlp_backward);
}
