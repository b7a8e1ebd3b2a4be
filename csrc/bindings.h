// minidl._C.direct and the op table, added to minidl._C by its PyInit (bindings.cpp).
#pragma once
#include <Python.h>

namespace minidl {

// Adds the submodule `direct` to minidl._C (called from its PyInit).
void add_direct_calls(PyObject* module);

}  // namespace minidl
