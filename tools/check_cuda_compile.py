#!/usr/bin/env python
"""Compile every csrc/cuda/*.cu with nvcc against the installed torch's headers, without a GPU.

    python tools/check_cuda_compile.py [--arch 80,90] [--jobs N] [-v] [FILE.cu ...]

A syntax or type error in the CUDA kernels then fails CI on machines that have nvcc but no GPU
(and a CPU-only torch: its wheel ships the ATen/c10 CUDA headers). The flags follow what
torch.utils.cpp_extension.BuildExtension passes to nvcc for minidl's CUDAExtension in setup.py
(-std=c++20, COMMON_NVCC_FLAGS, -fPIC, -O3, --fmad=false, -DMINIDL_WITH_CUDA, TORCH_EXTENSION_NAME,
...), with real code generation (-gencode ... code=sm_XX, so ptxas runs too) for each --arch. Objects go to
a temporary directory and are deleted: nothing is linked or loaded.

Exit status: 0 when every file compiles, or when nvcc is absent (it prints "skipped: nvcc not
found"); 1 with nvcc's messages when a file fails; 2 on bad usage. nvcc is looked up as $NVCC,
else $CUDA_HOME/bin/nvcc (or $CUDA_PATH), else on PATH.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ARCHS = "80,90"  # A100 and H100


def find_nvcc():
    if os.environ.get("NVCC"):
        return shutil.which(os.environ["NVCC"])
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def nvcc_flags(archs):
    # torch is imported only here, so that "skipped: nvcc not found" needs no torch.
    from torch.utils import cpp_extension

    # include_paths("cpu"): torch's own headers, the CUDA ones included (ATen/cuda, c10/cuda). The
    # CUDA toolkit's headers come from nvcc itself; cpp_extension's CUDA_HOME is None with a CPU torch.
    includes = cpp_extension.include_paths("cpu") + [sysconfig.get_paths()["include"]]
    flags = ["-std=c++20"] + list(cpp_extension.COMMON_NVCC_FLAGS)
    flags += ["--compiler-options", "-fPIC"]
    flags += ["-O3", "--fmad=false", "-DMINIDL_WITH_CUDA"]  # setup.py's extra_compile_args["nvcc"]
    flags += ["-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C"]
    for a in archs:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    return [f"-I{p}" for p in includes] + flags + generated_header_flags(includes[0])


def generated_header_flags(torch_include):
    """A CPU-only torch wheel ships c10/cuda's headers but not the one CMake generates for a CUDA
    build, c10/cuda/impl/cuda_cmake_macros.h, whose whole content is `#define C10_CUDA_BUILD_SHARED_LIBS`.
    c10/cuda/CUDAMacros.h skips the include under C10_CUDA_NO_CMAKE_CONFIGURE_FILE (torch's own switch,
    used by its HIP build); defining that and the macro the file would define preprocesses the same
    as with a CUDA wheel (the macro matters on Windows only). With a CUDA torch: no flags."""
    if os.path.isfile(os.path.join(torch_include, "c10", "cuda", "impl", "cuda_cmake_macros.h")):
        return []
    return ["-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE", "-DC10_CUDA_BUILD_SHARED_LIBS"]


def compile_one(nvcc, src, flags, outdir, verbose):
    obj = os.path.join(outdir, os.path.basename(src) + ".o")
    cmd = [nvcc, "-c", src, "-o", obj] + flags
    if verbose:
        print(" ".join(cmd), flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return src, proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("files", nargs="*", help="the .cu files (default: csrc/cuda/*.cu)")
    parser.add_argument("--arch", default=os.environ.get("MINIDL_CUDA_ARCHS", DEFAULT_ARCHS),
                        help=f"comma-separated SM versions to generate code for (default {DEFAULT_ARCHS}, "
                             f"or $MINIDL_CUDA_ARCHS)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="parallel nvcc processes")
    parser.add_argument("--verbose", "-v", action="store_true", help="print each nvcc command line")
    args = parser.parse_args(argv)

    archs = [a.strip().replace(".", "") for a in args.arch.split(",") if a.strip()]
    if not archs or not all(a.isdigit() for a in archs):
        parser.error(f"--arch: expected comma-separated SM versions like 80,90, got {args.arch!r}")
    files = args.files or sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
    if not files:
        print("check_cuda_compile: no .cu files to compile")
        return 0
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")

    nvcc = find_nvcc()
    if nvcc is None:
        print("check_cuda_compile: skipped: nvcc not found (set $NVCC or $CUDA_HOME, or put nvcc on PATH)")
        return 0
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    import torch

    print(f"check_cuda_compile: {nvcc} ({version[-1] if version else '?'}), torch {torch.__version__}, "
          f"sm_{', sm_'.join(archs)}")
    flags = nvcc_flags(archs)
    if "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE" in flags:
        print("check_cuda_compile: this torch lacks c10/cuda/impl/cuda_cmake_macros.h (a CPU-only wheel); "
              "defining its one macro on the command line instead")

    t0 = time.monotonic()
    failed = []
    with tempfile.TemporaryDirectory(prefix="minidl-nvcc-") as outdir:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda f: compile_one(nvcc, f, flags, outdir, args.verbose), files))
    for src, rc, output, secs in results:
        rel = os.path.relpath(src, ROOT)
        status = "ok" if rc == 0 else f"FAILED (nvcc exit status {rc})"
        print(f"  {rel}: {status} in {secs:.1f}s")
        if output.strip():
            print(output.rstrip())
        if rc != 0:
            failed.append(rel)
    total = time.monotonic() - t0
    if failed:
        print(f"check_cuda_compile: {len(failed)} of {len(files)} file(s) failed to compile: {', '.join(failed)}")
        return 1
    print(f"check_cuda_compile: {len(files)} file(s) compiled in {total:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
