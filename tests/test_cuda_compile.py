"""tools/check_cuda_compile.py: the CUDA kernels compile with nvcc against the installed torch's
headers, so that a syntax or type error in csrc/cuda fails CI on machines without a GPU.
Skipped where nvcc is absent (the script itself then exits 0 with "skipped: nvcc not found")."""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "check_cuda_compile.py")

_spec = importlib.util.spec_from_file_location("check_cuda_compile", SCRIPT)
check_cuda_compile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_cuda_compile)

NVCC = check_cuda_compile.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (set $NVCC or $CUDA_HOME, or put nvcc on PATH)")


def run_script(*args, env=None, timeout=600):
    proc = subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


@needs_nvcc
def test_cuda_sources_compile():
    rc, out = run_script()
    assert rc == 0, f"tools/check_cuda_compile.py failed:\n{out}"
    assert "activation.cu: ok" in out, out


@needs_nvcc
def test_a_type_error_fails_with_nvccs_message(tmp_path):
    bad = tmp_path / "bad.cu"
    bad.write_text("__global__ void k(float* x) { int* p = x; *p = 0; }\n")
    rc, out = run_script(str(bad), "--arch", "90")
    assert rc == 1, out
    assert "bad.cu: FAILED" in out and "error" in out and "1 of 1 file(s) failed" in out, out


def test_skips_cleanly_without_nvcc(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NVCC", "CUDA_HOME", "CUDA_PATH")}
    env["PATH"] = str(tmp_path)  # an empty directory: no nvcc on PATH
    rc, out = run_script(env=env, timeout=120)
    assert rc == 0, out
    assert "skipped: nvcc not found" in out, out


def test_bad_arch_is_a_usage_error():
    rc, out = run_script("--arch", "sm90", timeout=120)
    assert rc == 2 and "--arch" in out, out
