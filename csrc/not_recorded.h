// minidl's ops compute their own gradients, and torch's autograd does not record them: a call that
// autograd would record (grad mode on, an input that requires grad) would silently add nothing to
// torch's graph, so it is refused with an error naming the op and the argument. Both call paths
// check: the direct calls (bindings.cpp) before dispatching below the Autograd key, torch.ops.minidl
// through the Autograd kernels that library.cpp registers.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/GradMode.h>

#include <cstddef>
#include <optional>

namespace minidl {

// Raises the error for argument `index` of the op `qualified` ("minidl::relu_forward").
[[noreturn]] void refuse_recording(const char* qualified, size_t index);

namespace recorded {
inline bool by_autograd(const at::Tensor& t) { return t.defined() && t.requires_grad(); }
inline bool by_autograd(const std::optional<at::Tensor>& t) { return t.has_value() && by_autograd(*t); }
inline bool by_autograd(at::TensorList ts) {
  for (const at::Tensor& t : ts)
    if (by_autograd(t)) return true;
  return false;
}
template <typename T>
bool by_autograd(const T&) {  // numbers, int lists
  return false;
}
}  // namespace recorded

// The kernels' arguments, in schema order.
template <typename... Args>
void check_not_recorded(const char* qualified, const Args&... args) {
  if (!c10::GradMode::is_enabled()) return;
  size_t index = 0;
  const bool found = ((recorded::by_autograd(args) || (++index, false)) || ...);
  if (found) refuse_recording(qualified, index);
}

}  // namespace minidl
