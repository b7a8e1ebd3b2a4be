// The Python module minidl._C: its init (which adds minidl._C.direct and the op table, bindings.cpp)
// and the functions of the CPU runtime (block cache, streaming stores). Loading the library also
// runs the registrations: schemas in library.cpp, kernels in ops/, cpu/ and cuda/.
#include <Python.h>
#include <c10/util/Exception.h>

#include "conv.h"
#include "cpu/runtime/block_cache.h"
#include "cpu/runtime/streaming.h"
#include "bindings.h"

namespace {

// Python functions of minidl._C for the CPU block cache (minidl.memory wraps them).
PyObject* cpu_cache_info(PyObject*, PyObject*) {
  const auto i = minidl::cpu::cache_info();
  return Py_BuildValue("(LLLL)", static_cast<long long>(i.cached_bytes), static_cast<long long>(i.limit_bytes),
                       static_cast<long long>(i.hits), static_cast<long long>(i.misses));
}

PyObject* empty_cpu_cache(PyObject*, PyObject*) {
  minidl::cpu::empty_cache();
  Py_RETURN_NONE;
}

// A count of bytes >= 0 from ARG into *bytes; false with a Python error set (ValueError naming WHAT) if not.
bool byte_count(PyObject* arg, const char* what, long long* bytes) {
  *bytes = PyLong_AsLongLong(arg);
  if (*bytes == -1 && PyErr_Occurred()) return false;
  if (*bytes < 0) {
    PyErr_Format(PyExc_ValueError, "%s: expected bytes >= 0, got %lld", what, *bytes);
    return false;
  }
  return true;
}

PyObject* set_cpu_cache_limit(PyObject*, PyObject* arg) {
  long long bytes = 0;
  if (!byte_count(arg, "minidl.set_cpu_cache_limit", &bytes)) return nullptr;
  minidl::cpu::set_cache_limit(bytes);
  Py_RETURN_NONE;
}

// For tests: (isa, min_bytes, best isa, {isa: loop calls so far}) of the CPU loops' streaming
// stores (cpu/streaming.h).
PyObject* streaming_setting(PyObject*, PyObject*) {
  const auto s = minidl::cpu::streaming_setting();
  using minidl::cpu::streamed_loops;
  return Py_BuildValue("(sLs{sLsLsL})", s.isa.c_str(), static_cast<long long>(s.min_bytes),
                       minidl::cpu::best_streaming_isa().c_str(), "avx512",
                       static_cast<long long>(streamed_loops("avx512")), "avx2",
                       static_cast<long long>(streamed_loops("avx2")), "none",
                       static_cast<long long>(streamed_loops("none")));
}

// For tests: _set_streaming(isa, min_bytes) -> the old (isa, min_bytes).
PyObject* set_streaming(PyObject*, PyObject* args) {
  const char* isa = nullptr;
  long long min_bytes = 0;
  if (!PyArg_ParseTuple(args, "sL", &isa, &min_bytes)) return nullptr;
  try {
    const auto old = minidl::cpu::set_streaming({isa, min_bytes});
    return Py_BuildValue("(sL)", old.isa.c_str(), static_cast<long long>(old.min_bytes));
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
    return nullptr;
  }
}

// For tests: _set_conv_direct(enabled) -> the old setting (CPU convolutions' direct loops or im2col).
PyObject* set_conv_direct(PyObject*, PyObject* arg) {
  const int enabled = PyObject_IsTrue(arg);
  if (enabled < 0) return nullptr;
  return PyBool_FromLong(minidl::set_conv_direct(enabled != 0));
}

// For tests: _set_conv_winograd(enabled) -> the old setting (3x3 CPU convolutions by Winograd or im2col).
PyObject* set_conv_winograd(PyObject*, PyObject* arg) {
  const int enabled = PyObject_IsTrue(arg);
  if (enabled < 0) return nullptr;
  return PyBool_FromLong(minidl::set_conv_winograd(enabled != 0));
}

// For tests: _set_conv_chunk_bytes(bytes) -> the old value (0: im2col over the whole batch at once).
PyObject* set_conv_chunk_bytes(PyObject*, PyObject* arg) {
  long long bytes = 0;
  if (!byte_count(arg, "_set_conv_chunk_bytes", &bytes)) return nullptr;
  return PyLong_FromLongLong(minidl::set_conv_chunk_bytes(bytes));
}

PyMethodDef methods[] = {
    {"_cpu_cache_info", cpu_cache_info, METH_NOARGS, "(cached bytes, limit bytes, hits, misses)"},
    {"_empty_cpu_cache", empty_cpu_cache, METH_NOARGS, "Unmap every cached block."},
    {"_set_cpu_cache_limit", set_cpu_cache_limit, METH_O, "Keep at most this many bytes of freed blocks."},
    {"_streaming_setting", streaming_setting, METH_NOARGS, "(isa, min_bytes, best isa, {isa: loop calls}) of streaming stores"},
    {"_set_streaming", set_streaming, METH_VARARGS, "Stream outputs of >= min_bytes with isa; returns the old pair."},
    {"_set_conv_direct", set_conv_direct, METH_O, "Let CPU convolutions take the direct loops; returns the old setting."},
    {"_set_conv_winograd", set_conv_winograd, METH_O,
     "Let 3x3 CPU convolutions take Winograd; returns the old setting."},
    {"_set_conv_chunk_bytes", set_conv_chunk_bytes, METH_O, "im2col bytes per chunk of images on the CPU; returns the old value."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  try {
    minidl::add_direct_calls(module);
  } catch (const std::exception& e) {
    Py_DECREF(module);
    PyErr_SetString(PyExc_ImportError, e.what());
    return nullptr;
  }
  return module;
}
}
