"""Builds minidl and its C++ (and, where CUDA exists, CUDA) extension minidl._C.

Environment switches:
  MINIDL_NO_EXT=1     install the pure-Python package only
  MINIDL_NO_CUDA=1    never build the CUDA kernels
  FORCE_CUDA=1        build the CUDA kernels even without a visible GPU (needs a CUDA torch and nvcc)
  MINIDL_SANITIZE=address,undefined   build with ASan/UBSan (see README)
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


def _write_build_info(torch_version, cuda):
    # minidl.backend compares this with the torch that imports it, before loading _C.
    with open(os.path.join(HERE, "src", "minidl", "_build_info.py"), "w") as f:
        f.write('"""Written by setup.py: the torch this extension was compiled against."""\n')
        f.write(f"TORCH_VERSION = {torch_version!r}\nWITH_CUDA = {cuda!r}\n")


def _check_cxx_runtime(library):
    """Fail the build if the extension carries its own static copy of libstdc++.

    torch's libraries use the shared libstdc++; a second, static copy inside minidl._C (seen with a
    Python whose configured compiler links it statically) shares std::ostringstream objects with
    torch's copy, and crashes on the first error message that formats a number. readelf comes with
    the binutils that every compiler uses; without it (or on a non-ELF platform) there is no check."""
    readelf = shutil.which("readelf")
    if readelf is None or not sys.platform.startswith("linux"):
        return
    dynamic = subprocess.run([readelf, "-d", library], capture_output=True, text=True)
    if dynamic.returncode == 0 and "(NEEDED)" in dynamic.stdout and "libstdc++" not in dynamic.stdout:
        raise RuntimeError(
            f"minidl: {library} was linked with a static copy of libstdc++ (readelf -d lists no "
            "libstdc++.so), and would crash mixing it with torch's shared one. Build with a compiler that "
            'links it dynamically, e.g.  CC=gcc CXX=g++ LDSHARED="gcc -shared" pip install --no-build-isolation .')


def _extensions():
    if _flag("MINIDL_NO_EXT"):
        info = os.path.join(HERE, "src", "minidl", "_build_info.py")
        if os.path.exists(info):
            os.remove(info)
        return [], {}, "torch>=2.4"
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    # Every .cpp under csrc/ (one small translation unit each: ninja compiles them in parallel).
    sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    with_cuda = (
        not _flag("MINIDL_NO_CUDA")
        and bool(cuda_sources)
        and torch.version.cuda is not None
        and CUDA_HOME is not None
        and (torch.cuda.is_available() or _flag("FORCE_CUDA"))
    )
    # -ffp-contract=off: no silent fused multiply-adds, so every clone of a loop rounds alike;
    # -fno-trapping-math: lets branch-free selects vectorize (torch builds with it too).
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math"] + (["-DMINIDL_WITH_CUDA"] if with_cuda else [])
    ldflags = ["-fopenmp"]
    sanitize = os.environ.get("MINIDL_SANITIZE", "")
    if sanitize:
        cxx = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g", "-O1"] + cxx[1:]
        ldflags += [f"-fsanitize={sanitize}"]
    extra = {"cxx": cxx}
    if with_cuda:
        extra["nvcc"] = ["-O3", "--fmad=false", "-DMINIDL_WITH_CUDA"]  # no contraction, as -ffp-contract=off
        ext = CUDAExtension("minidl._C", sources + cuda_sources, extra_compile_args=extra, extra_link_args=ldflags)
    else:
        ext = CppExtension("minidl._C", sources, extra_compile_args=extra, extra_link_args=ldflags)
    _write_build_info(torch.__version__, with_cuda)

    class BuildExtensionChecked(BuildExtension):
        """BuildExtension, then the check that the library links libstdc++ dynamically."""

        def run(self):
            super().run()
            for e in self.extensions:
                _check_cxx_runtime(self.get_ext_fullpath(e.name))

    # Binary extensions of torch run only with the torch they were compiled against.
    return [ext], {"build_ext": BuildExtensionChecked}, f"torch=={torch.__version__}"


ext_modules, cmdclass, torch_requirement = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass, install_requires=[torch_requirement])
