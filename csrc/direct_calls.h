// minidl._C.direct: the ops callable from Python through pybind11 and the dispatcher's typed path.
#pragma once
#include <Python.h>

namespace minidl {

// Adds the submodule `direct` to minidl._C (called from its PyInit).
void add_direct_calls(PyObject* module);

}  // namespace minidl
