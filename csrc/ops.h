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

// Convolution (Conv2d).
#define MINIDL_CONV_OPS(X)

// Pooling, batch normalisation and dropout (MaxPool2d, BatchNorm1d/2d, Dropout).
#define MINIDL_LAYER_OPS(X)

// Cross-entropy and the siamese head's pieces (CrossEntropyLoss, softmax, outer product).
#define MINIDL_CLASSIFY_OPS(X)

// Adam.
#define MINIDL_ADAM_OPS(X)                                                                                       \
  /* one step (number `step`, counted from 1) of torch.optim.Adam's arithmetic for every parameter; */           \
  /* exp_avgs and exp_avg_sqs start at zero; zero_grads: then set each gradient to zero in the same pass */      \
  X(adam_step_,                                                                                                  \
    "(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] exp_avgs, Tensor(d!)[] exp_avg_sqs, int step, "      \
    "float lr, float beta1, float beta2, float eps, float weight_decay, bool zero_grads=False) -> ()",           \
    void(TensorList, TensorList, TensorList, TensorList, int64_t, double, double, double, double, double, bool))

// The table: every family.
#define MINIDL_OPS(X) MINIDL_DENSE_OPS(X) MINIDL_CONV_OPS(X) MINIDL_LAYER_OPS(X) MINIDL_CLASSIFY_OPS(X) MINIDL_ADAM_OPS(X)

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
