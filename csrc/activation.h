// The activation kinds that the fused ops take (int[] activations in their schemas): a code is
// the kind's index in this list, and in minidl.kernels.ACTIVATIONS (tests/test_op_table.py).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <string>

#define MINIDL_ACTIVATIONS(X) X(None, "none") X(Relu, "relu") X(Tanh, "tanh")

namespace minidl {

#define MINIDL_ACTIVATION_ENUM(kind, name) kind,
enum class Activation : int64_t { MINIDL_ACTIVATIONS(MINIDL_ACTIVATION_ENUM) };
#undef MINIDL_ACTIVATION_ENUM

#define MINIDL_ACTIVATION_NAME(kind, name) name,
inline constexpr const char* kActivationNames[] = {MINIDL_ACTIVATIONS(MINIDL_ACTIVATION_NAME)};
#undef MINIDL_ACTIVATION_NAME
inline constexpr int64_t kActivationCount = sizeof(kActivationNames) / sizeof(kActivationNames[0]);

// "0 (none), 1 (relu) or 2 (tanh)", for messages.
inline std::string activation_codes() {
  std::string s;
  for (int64_t i = 0; i < kActivationCount; ++i)
    s += (i == 0 ? "" : i + 1 == kActivationCount ? " or " : ", ") + std::to_string(i) + " (" + kActivationNames[i] + ")";
  return s;
}

template <typename Op>
Activation to_activation(int64_t code, const Op& op) {
  TORCH_CHECK_VALUE(code >= 0 && code < kActivationCount, op, ": expected activation codes ", activation_codes(),
                    ", got ", code);
  return static_cast<Activation>(code);
}

// The layout of an elementwise op's output: channels-last for a channels-last input (a conv stack's
// activations stay in the layout its kernels are fastest in), else contiguous. Python: kernels.fake.
inline at::MemoryFormat kept_format(const at::Tensor& t) {
  return t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous() ? at::MemoryFormat::ChannelsLast
                                                                                 : at::MemoryFormat::Contiguous;
}

}  // namespace minidl
