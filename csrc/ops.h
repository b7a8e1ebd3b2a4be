// Every minidl op, declared once: X(name, schema arguments and returns, C++ signature of its kernels).
// library.cpp defines the schemas and the Autograd kernels from this table, bindings.cpp the
// direct calls (minidl._C.direct), and module.cpp hands it to Python as minidl._C._ops, against
// which tests/test_op_table.py checks the Python kernels and the shape functions.
// Adding an op: a row in its family's list here, its kernels (ops/, cpu/, cuda/), its Python fallback
// (kernels/python/), its shape function (kernels/fake/) and a case in tests/op_cases*.py.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>
#include <vector>

namespace minidl::signature {
using at::IntArrayRef;
using at::Tensor;
using at::TensorList;
using OptTensor = std::optional<at::Tensor>;
using OptGenerator = std::optional<at::Generator>;
using TensorPair = std::tuple<at::Tensor, at::Tensor>;
using TensorTriple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using TensorFive = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Tensors = std::vector<at::Tensor>;
}  // namespace minidl::signature

// Activation codes (int[] activations) are indices into MINIDL_ACTIVATIONS (activation.h).
#define MINIDL_DENSE_OPS(X)                                                                                      \
  /* y = input @ weight.T + bias */                                                                              \
  X(linear_forward, "(Tensor input, Tensor weight, Tensor? bias) -> Tensor",                                     \
    Tensor(const Tensor&, const Tensor&, const OptTensor&))                                                      \
  /* returns grad_input; adds the weight and bias gradients into grad_weight and grad_bias */                    \
  X(linear_backward,                                                                                             \
    "(Tensor grad_output, Tensor input, Tensor weight, Tensor(a!) grad_weight, Tensor(b!)? grad_bias) -> Tensor", \
    Tensor(const Tensor&, const Tensor&, const Tensor&, Tensor&, const OptTensor&))                              \
  X(tanh_forward, "(Tensor input) -> Tensor", Tensor(const Tensor&))                                             \
  /* from the saved output y: grad_output * (1 - y^2) */                                                         \
  X(tanh_backward, "(Tensor grad_output, Tensor output) -> Tensor", Tensor(const Tensor&, const Tensor&))        \
  X(relu_forward, "(Tensor input) -> Tensor", Tensor(const Tensor&))                                             \
  /* from the saved output y: grad_output where y > 0, else 0 */                                                 \
  X(relu_backward, "(Tensor grad_output, Tensor output) -> Tensor", Tensor(const Tensor&, const Tensor&))        \
  /* a stack of Linear layers, each followed by an activation; returns every layer's output */                   \
  X(mlp_forward, "(Tensor input, Tensor[] weights, Tensor[] biases, int[] activations) -> Tensor[]",             \
    Tensors(const Tensor&, TensorList, TensorList, IntArrayRef))                                                 \
  /* adds into grad_weights and grad_biases; writes grad_input unless it is None. Returns nothing: */            \
  /* functionalization (opcheck, torch.compile) supports ops mutating tensor lists only then */                  \
  X(mlp_backward,                                                                                                \
    "(Tensor grad_output, Tensor input, Tensor[] outputs, Tensor[] weights, Tensor(a!)[] grad_weights, "         \
    "Tensor(b!)[] grad_biases, int[] activations, Tensor(c!)? grad_input) -> ()",                                \
    void(const Tensor&, const Tensor&, TensorList, TensorList, TensorList, TensorList, IntArrayRef,               \
         const OptTensor&))                                                                                      \
  /* (mean((output - target)^2), 2 (output - target) / numel) */                                                 \
  X(mse_forward, "(Tensor output, Tensor target) -> (Tensor, Tensor)", TensorPair(const Tensor&, const Tensor&)) \
  /* one step of torch.optim.SGD's arithmetic for every parameter; momentum buffers start at zero; */            \
  /* zero_grads: then set each gradient to zero in the same pass */                                              \
  X(sgd_step_,                                                                                                   \
    "(Tensor(a!)[] params, Tensor(c!)[] grads, Tensor(b!)[] momentum_buffers, float lr, float momentum, "        \
    "float weight_decay, bool zero_grads=False) -> ()",                                                          \
    void(TensorList, TensorList, TensorList, double, double, double, bool))

// Convolution (Conv2d). The output (and grad_input) is channels-last when the input or the weight
// suggests that memory format, as torch's CPU convolution decides; else contiguous.
#define MINIDL_CONV_OPS(X)                                                                                       \
  /* zero padding; stride and padding are [height, width] */                                                     \
  X(conv2d_forward, "(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding) -> Tensor",        \
    Tensor(const Tensor&, const Tensor&, const OptTensor&, IntArrayRef, IntArrayRef))                             \
  /* adds the weight and bias gradients into grad_weight and grad_bias; returns grad_input, or an empty */       \
  /* tensor of shape [0] when input_grad is false (that work is skipped) */                                      \
  X(conv2d_backward,                                                                                             \
    "(Tensor grad_output, Tensor input, Tensor weight, Tensor(a!) grad_weight, Tensor(b!)? grad_bias, "          \
    "int[] stride, int[] padding, bool input_grad=True) -> Tensor",                                              \
    Tensor(const Tensor&, const Tensor&, const Tensor&, Tensor&, const OptTensor&, IntArrayRef, IntArrayRef,     \
           bool))

// Pooling, batch normalisation and dropout (MaxPool2d, BatchNorm1d/2d, Dropout).
#define MINIDL_LAYER_OPS(X)                                                                                      \
  /* (output, indices): each window's first maximum (a NaN wins) and its index h * W + w in its plane */        \
  X(maxpool2d_forward, "(Tensor input, int[] kernel_size, int[] stride) -> (Tensor, Tensor)",                    \
    TensorPair(const Tensor&, IntArrayRef, IntArrayRef))                                                         \
  /* grad_input: each grad_output element added at its window's saved index */                                  \
  X(maxpool2d_backward,                                                                                          \
    "(Tensor grad_output, Tensor input, Tensor indices, int[] kernel_size, int[] stride) -> Tensor",             \
    Tensor(const Tensor&, const Tensor&, const Tensor&, IntArrayRef, IntArrayRef))                               \
  /* (output, mean, invstd) over dims 0, 2, ...; training: batch statistics, running ones updated in place */   \
  /* (unbiased variance); else the running statistics */                                                         \
  X(batch_norm_forward,                                                                                          \
    "(Tensor input, Tensor weight, Tensor bias, Tensor(a!) running_mean, Tensor(b!) running_var, bool training, " \
    "float momentum, float eps) -> (Tensor, Tensor, Tensor)",                                                    \
    TensorTriple(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, bool, double, double))           \
  /* returns grad_input; adds the weight and bias gradients into grad_weight and grad_bias */                    \
  X(batch_norm_backward,                                                                                         \
    "(Tensor grad_output, Tensor input, Tensor weight, Tensor mean, Tensor invstd, Tensor(a!) grad_weight, "     \
    "Tensor(b!) grad_bias, bool training) -> Tensor",                                                            \
    Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, bool))   \
  /* (output, mask): mask = bernoulli(1 - p) / (1 - p) drawn as torch's dropout draws it, output = input*mask */ \
  X(dropout_forward, "(Tensor input, float p, Generator? generator=None) -> (Tensor, Tensor)",                   \
    TensorPair(const Tensor&, double, const OptGenerator&))                                                      \
  X(dropout_backward, "(Tensor grad_output, Tensor mask) -> Tensor", Tensor(const Tensor&, const Tensor&))

// The convnet block after a convolution, MaxPool2d -> BatchNorm2d -> ReLU, one op each way (Sequential's
// fusion, nn/block.py). argmax (uint8): each window's first maximum (a NaN wins) as its position i * kw + j
// in the window; pooled: the max-pool's output, which the backward's batch-norm sums need.
#define MINIDL_BLOCK_OPS(X)                                                                                      \
  /* (output, pooled, argmax, mean, invstd); batch norm as batch_norm_forward on pooled, then ReLU */            \
  X(pool_norm_relu_forward,                                                                                      \
    "(Tensor input, int[] kernel_size, int[] stride, Tensor weight, Tensor bias, Tensor(a!) running_mean, "      \
    "Tensor(b!) running_var, bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor, Tensor, "     \
    "Tensor)",                                                                                                   \
    TensorFive(const Tensor&, IntArrayRef, IntArrayRef, const Tensor&, const Tensor&, Tensor&, Tensor&, bool,    \
               double, double))                                                                                  \
  /* returns grad_input (input's shape and memory format); adds into grad_weight and grad_bias */                \
  X(pool_norm_relu_backward,                                                                                     \
    "(Tensor grad_output, Tensor input, Tensor output, Tensor pooled, Tensor argmax, int[] kernel_size, "        \
    "int[] stride, Tensor weight, Tensor mean, Tensor invstd, Tensor(a!) grad_weight, Tensor(b!) grad_bias, "    \
    "bool training) -> Tensor",                                                                                  \
    Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, IntArrayRef, IntArrayRef,  \
           const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, bool))

// Cross-entropy and the siamese head's pieces (CrossEntropyLoss, softmax, outer product).
#define MINIDL_CLASSIFY_OPS(X)                                                                                     \
  /* (mean over rows of -log softmax(logits)[target], its gradient (softmax - onehot) / N); int64 targets */       \
  X(cross_entropy_forward, "(Tensor logits, Tensor target) -> (Tensor, Tensor)",                                   \
    TensorPair(const Tensor&, const Tensor&))                                                                      \
  X(softmax_forward, "(Tensor input, int dim) -> Tensor", Tensor(const Tensor&, int64_t))                          \
  /* from the saved output y: y * (grad_output - sum(grad_output * y, dim)) */                                     \
  X(softmax_backward, "(Tensor grad_output, Tensor output, int dim) -> Tensor",                                    \
    Tensor(const Tensor&, const Tensor&, int64_t))                                                                 \
  /* input [N, 2, K] -> [N, K, K]: out[n, i, j] = input[n, 0, i] * input[n, 1, j] */                               \
  X(pair_outer_forward, "(Tensor input) -> Tensor", Tensor(const Tensor&))                                         \
  /* grad_output [N, K, K] -> [N, 2, K]: the gradients of both rows */                                             \
  X(pair_outer_backward, "(Tensor grad_output, Tensor input) -> Tensor", Tensor(const Tensor&, const Tensor&))

// Adam.
#define MINIDL_ADAM_OPS(X)                                                                                       \
  /* one step (number `step`, counted from 1) of torch.optim.Adam's arithmetic for every parameter; */           \
  /* exp_avgs and exp_avg_sqs start at zero; zero_grads: then set each gradient to zero in the same pass */      \
  X(adam_step_,                                                                                                  \
    "(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] exp_avgs, Tensor(d!)[] exp_avg_sqs, int step, "      \
    "float lr, float beta1, float beta2, float eps, float weight_decay, bool zero_grads=False) -> ()",           \
    void(TensorList, TensorList, TensorList, TensorList, int64_t, double, double, double, double, double, bool))

// The table: every family.
#define MINIDL_OPS(X)                                                                                  \
  MINIDL_DENSE_OPS(X) MINIDL_CONV_OPS(X) MINIDL_LAYER_OPS(X) MINIDL_BLOCK_OPS(X) MINIDL_CLASSIFY_OPS(X) \
      MINIDL_ADAM_OPS(X)

namespace minidl::ops {
using namespace minidl::signature;

// One type per op: ops::linear_forward::name is "minidl.linear_forward", ::Signature its kernels' type.
#define MINIDL_OP_TYPE(op, schema, signature)               \
  struct op {                                               \
    static constexpr const char* name = "minidl." #op;      \
    static constexpr const char* qualified = "minidl::" #op; \
    using Signature = signature;                            \
  };
MINIDL_OPS(MINIDL_OP_TYPE)
#undef MINIDL_OP_TYPE

}  // namespace minidl::ops
