// The schemas of the ops in ops.h, and their Autograd kernels: each refuses a call that torch's
// autograd would record (not_recorded.h), then runs the op's kernel below the Autograd key.
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>

#include "dispatch.h"
#include "not_recorded.h"
#include "ops.h"

namespace minidl {

void refuse_recording(const char* qualified, size_t index) {
  const auto& argument = c10::Dispatcher::singleton().findSchemaOrThrow(qualified, "").schema().arguments().at(index);
  const bool list = argument.type()->kind() == c10::TypeKind::ListType;
  const std::string what = (list ? "a tensor of " : "") + argument.name();
  TORCH_CHECK(false, "minidl.", qualified + std::string("minidl::").size(), ": ", what,
              " requires grad, but minidl ops are not recorded by torch's autograd; call it under torch.no_grad() "
              "or on detached tensors (minidl's modules compute their own gradients)");
}

namespace {

template <typename Op, typename Signature = typename Op::Signature>
struct AutogradKernel;

template <typename Op, typename Result, typename... Args>
struct AutogradKernel<Op, Result(Args...)> {
  static Result call(Args... args) {
    check_not_recorded(Op::qualified, args...);
    static const auto op = typed_op<Result(Args...)>(Op::qualified);
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(args...);
  }
};

}  // namespace
}  // namespace minidl

TORCH_LIBRARY(minidl, m) {
#define MINIDL_DEFINE(op, schema, signature) m.def(#op schema);
  MINIDL_OPS(MINIDL_DEFINE)
#undef MINIDL_DEFINE
}

// An Autograd kernel per op, rather than torch's boxed "autograd not implemented" fallback, which
// walks every argument on every call; the direct calls skip it (they check before dispatching).
TORCH_LIBRARY_IMPL(minidl, Autograd, m) {
#define MINIDL_AUTOGRAD(op, schema, signature) m.impl(#op, TORCH_FN(minidl::AutogradKernel<minidl::ops::op>::call));
  MINIDL_OPS(MINIDL_AUTOGRAD)
#undef MINIDL_AUTOGRAD
}
