"""The op table (csrc/ops.h, minidl._C._ops) against everything that implements or describes an op: the
registered schemas, the direct calls, the cpp and Python backends, the shape functions and the op tests."""
import inspect
import re

import pytest
import torch

from conftest import require_cpp
from minidl import kernels
from minidl.kernels import python as python_kernels
from op_cases import op_cases

HELPERS = {"zero_"}  # what both backends offer besides the ops: not an op of the table


def _table():
    require_cpp()
    import minidl._C

    return {name: torch._C.parse_schema(f"minidl::{schema}") for name, schema in minidl._C._ops}


def _arguments(schema):
    """(name, default) of each argument, defaults as Python values (None when there is none)."""
    return [(a.name, a.default_value if a.has_default_value() else None) for a in schema.arguments]


def _defined_functions(package):
    """The public functions of a package defined in it or in its own modules (its op families' files)."""
    return {n for n, f in vars(package).items() if inspect.isfunction(f) and not n.startswith("_")
            and (f.__module__ == package.__name__ or f.__module__.startswith(package.__name__ + "."))}


def test_the_table_is_what_torch_registered():
    table = _table()
    registered = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("minidl::"))
    assert registered == sorted(table)
    for name, schema in table.items():
        assert str(getattr(torch.ops.minidl, name).default._schema) == str(schema)


def test_every_op_has_a_direct_call_with_the_schemas_arguments():
    import minidl._C

    table = _table()
    assert sorted(n for n in dir(minidl._C.direct) if not n.startswith("_")) == sorted(table)
    for name, schema in table.items():
        # pybind11's signature line: minidl.sgd_step_(params: list[torch.Tensor], ..., zero_grads: bool = False) -> None
        doc = getattr(minidl._C.direct, name).__doc__.splitlines()[0]
        assert doc.startswith(f"minidl.{name}("), doc
        params = re.findall(r"(\w+): [^,=]+?(?: = (\w+))?(?:, |\) ->)", doc)
        assert [(n, None if d == "" else eval(d)) for n, d in params] == _arguments(schema), doc


def test_the_cpp_backend_binds_every_op_and_nothing_else():
    import minidl._C
    from minidl.kernels import cpp

    table = _table()
    assert set(cpp.OPS) == set(table)
    public = {n for n, v in vars(cpp).items() if callable(v) and not n.startswith("_") and not inspect.ismodule(v)}
    assert public == set(table) | HELPERS
    for name in table:
        assert getattr(cpp, name) is getattr(minidl._C.direct, name)


def test_the_python_backend_defines_every_op_with_the_schemas_signature():
    table = _table()
    assert _defined_functions(python_kernels) == set(table) | HELPERS
    for name, schema in table.items():
        params = inspect.signature(getattr(python_kernels, name)).parameters.values()
        got = [(p.name, None if p.default is inspect.Parameter.empty else p.default) for p in params]
        assert got == _arguments(schema), name


def test_every_op_has_a_shape_function_and_op_test_cases():
    from torch._library.simple_registry import singleton

    table = _table()
    for name in table:
        assert singleton.find(f"minidl::{name}").fake_impl.kernel is not None, f"minidl.{name} has no fake kernel"
    assert {name for name, _ in op_cases("cpu")} == set(table)


def test_activation_kinds_are_the_cpp_enums():
    require_cpp()
    import minidl._C

    assert kernels.ACTIVATIONS == ("none", "relu", "tanh")
    assert minidl._C._activations == kernels.ACTIVATIONS


@pytest.mark.parametrize("code", [-1, 3])
def test_a_bad_activation_code_is_refused_naming_the_kinds(ops, code):
    x, w, b = torch.randn(2, 3), torch.randn(4, 3), torch.randn(4)
    with pytest.raises(ValueError, match=r"minidl.mlp_forward \(layer 0\): expected activation codes 0 \(none\), "
                                         rf"1 \(relu\) or 2 \(tanh\), got {code}"):
        ops.mlp_forward(x, [w], [b], [code])
