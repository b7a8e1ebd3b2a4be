// The activation codes that the fused ops take (int[] activations in their schemas).
#pragma once
#include <c10/util/Exception.h>

#include <cstdint>

namespace minidl {

enum class Activation : int64_t { None = 0, Relu = 1, Tanh = 2 };

template <typename Op>
Activation to_activation(int64_t code, const Op& op) {
  TORCH_CHECK_VALUE(code >= 0 && code <= 2, op, ": expected activation codes 0 (none), 1 (relu) or 2 (tanh), got ",
                    code);
  return static_cast<Activation>(code);
}

}  // namespace minidl
