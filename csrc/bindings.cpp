// minidl._C.direct: every op of ops.h, callable from Python without torch.ops' boxed path, and the
// op table itself (minidl._C._ops, minidl._C._activations).
// torch.ops converts every argument to an IValue, releases and retakes the GIL, and unboxes again,
// which makes a call about twice as costly (`python -m minidl.bench --sections calls`); calls are
// most of a small network's training step. These functions take the tensors straight from
// pybind11 and call the op through the dispatcher's typed (unboxed) path, as torch's own Python
// bindings do, so that everything below the dispatcher (device dispatch, fake and meta tensors,
// __torch_dispatch__, every registered kernel) behaves as through torch.ops; __torch_function__
// modes and overrides are not consulted.
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/csrc/utils/pybind.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "activation.h"
#include "bindings.h"
#include "dispatch.h"
#include "not_recorded.h"
#include "ops.h"

namespace minidl {

// A keyword argument named as in the op's schema, with the schema's default value if it has one.
struct SchemaArgument {
  const c10::Argument* argument;
};

pybind11::object to_python(const c10::IValue& v) {
  if (v.isBool()) return pybind11::bool_(v.toBool());
  if (v.isInt()) return pybind11::int_(v.toInt());
  if (v.isDouble()) return pybind11::float_(v.toDouble());
  TORCH_CHECK(v.isNone(), "minidl._C: no Python value for a schema default of type ", v.tagKind());
  return pybind11::none();
}

}  // namespace minidl

namespace pybind11::detail {

template <>
struct process_attribute<minidl::SchemaArgument> : process_attribute_default<minidl::SchemaArgument> {
  static void init(const minidl::SchemaArgument& a, function_record* r) {
    const char* name = a.argument->name().c_str();  // the dispatcher keeps the schema for the library's life
    if (a.argument->default_value().has_value()) {
      process_attribute<arg_v>::init(arg_v(name, minidl::to_python(*a.argument->default_value())), r);
    } else {
      process_attribute<arg>::init(arg(name), r);
    }
  }
};

}  // namespace pybind11::detail

namespace minidl {
namespace {

namespace py = pybind11;

// Kernels that touch more than this many elements run with the GIL released, so that other Python
// threads go on meanwhile; below it, releasing and retaking the GIL would cost more than the kernel.
constexpr int64_t kReleaseGilAbove = 1 << 16;

// Elements of the tensor arguments; a symbolic size (tracing) counts 0: such calls keep the GIL.
int64_t elements(const at::Tensor& t) { return t.defined() ? t.sym_numel().maybe_as_int().value_or(0) : 0; }
int64_t elements(const std::optional<at::Tensor>& t) { return t.has_value() ? elements(*t) : 0; }
int64_t elements(at::TensorList ts) {
  int64_t n = 0;
  for (const at::Tensor& t : ts) n += elements(t);
  return n;
}
template <typename T>
int64_t elements(const T&) {
  return 0;
}

// The type pybind11 converts each kernel argument from.
template <typename T>
struct FromPython {
  using type = T;
};
template <>
struct FromPython<at::Tensor&> {
  using type = at::Tensor;
};
template <>
struct FromPython<at::TensorList> {
  using type = std::vector<at::Tensor>;
};
template <>
struct FromPython<at::IntArrayRef> {
  using type = std::vector<int64_t>;
};

template <typename Op, typename Signature = typename Op::Signature>
struct Direct;

template <typename Op, typename Result, typename... Args>
struct Direct<Op, Result(Args...)> {
  using Handle = c10::TypedOperatorHandle<Result(Args...)>;

  static Result call(const Handle& op, Args... args) {
    check_not_recorded(Op::qualified, args...);
    auto run = [&]() -> Result {
      const at::AutoDispatchBelowADInplaceOrView below_autograd;  // checked above: skip the Autograd kernel
      return op.call(args...);
    };
    if ((elements(args) + ...) <= kReleaseGilAbove) return run();
    py::gil_scoped_release no_gil;
    return run();
  }

  // minidl._C.direct.<op>, named "minidl.<op>": a call with arguments of the wrong types then fails
  // with a TypeError that names the op and lists the expected argument types.
  template <size_t... I>
  static void add(py::module_& m, std::index_sequence<I...>) {
    const Handle op = typed_op<Result(Args...)>(Op::qualified);
    const auto& arguments = op.schema().arguments();
    TORCH_INTERNAL_ASSERT(arguments.size() == sizeof...(Args), Op::name, ": schema and signature differ");
    auto function = [op](typename FromPython<Args>::type... args) -> Result { return call(op, args...); };
    m.add_object(Op::name + std::strlen("minidl."),
                 py::cpp_function(std::move(function), py::name(Op::name), py::scope(m), SchemaArgument{&arguments[I]}...));
  }

  static void add(py::module_& m) { add(m, std::index_sequence_for<Args...>{}); }
};

}  // namespace

void add_direct_calls(PyObject* parent) {
  auto module = py::reinterpret_borrow<py::module_>(parent);
  auto m = module.def_submodule("direct", "The minidl ops, called through the dispatcher without torch.ops' boxing.");
#define MINIDL_BIND(op, schema, signature) Direct<ops::op>::add(m);
  MINIDL_OPS(MINIDL_BIND)
#undef MINIDL_BIND

  // The op table: (name, schema) pairs, and the activation kinds by code.
  py::list table;
#define MINIDL_ROW(op, schema, signature) table.append(py::make_tuple(#op, #op schema));
  MINIDL_OPS(MINIDL_ROW)
#undef MINIDL_ROW
  module.attr("_ops") = py::tuple(table);
  py::list kinds;
  for (const char* kind : kActivationNames) kinds.append(kind);
  module.attr("_activations") = py::tuple(kinds);
}

}  // namespace minidl
