// Typed (unboxed) handles of the registered ops, for calling them through the dispatcher from C++.
#pragma once
#include <ATen/core/dispatch/Dispatcher.h>

namespace minidl {

// The op `name` ("minidl::tanh_forward"); Signature must be its kernels' C++ signature.
template <typename Signature>
c10::TypedOperatorHandle<Signature> typed_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace minidl
