#!/usr/bin/env bash
# Build minidl against this machine's CUDA torch and check it on the GPU, in one go, most needed
# first: the CUDA tests, every device-parametrized test's CUDA variant, a short pairs study on CUDA,
# the benchmark's conv section, compute-sanitizer's memcheck over every op and a training step of
# each study model, the disk example, the benchmark's other sections, then the rest of the test
# suite. The stages' own limits add up to more than the default DEADLINE: what it leaves no time for
# is reported "skipped (out of time)" (exit 1); rerun with what is left. From the repository root:
#
#     bash tools/gpu_check.sh            # logs and bench JSON in $OUT (default: a new temp folder)
#
# Options (environment): PYTHON (default python3), DEADLINE seconds for the whole run (default
# 570; each stage gets what is left, so a slow stage cannot eat the logs of the ones before it),
# MINIDL_MNIST_DIR (full MNIST in IDX format, for the pairs study; skipped without it),
# TORCH_CUDA_ARCH_LIST (default: the visible GPU's). Wheels in .whl/ (e.g. mlxtend, on a machine
# without a package index; *.whl is git-ignored) are installed into a temporary folder first.
# Where Python's configured compiler links libstdc++ statically, setup.py stops and says so: run
# with CC=gcc CXX=g++ LDSHARED="gcc -shared" to build with the system compiler.
set -u
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
START=$(date +%s)
DEADLINE=${DEADLINE:-570}
export PYTHONUNBUFFERED=1 MINIDL_REQUIRE_EXT=1
STATUS=()
FAILED=0

# stage NAME CAP LOG COMMAND...: run COMMAND with at most CAP seconds (or what is left), output to LOG.
stage() {
  local name=$1 cap=$2 log=$3
  shift 3
  local left=$((DEADLINE - ($(date +%s) - START)))
  ((cap > left)) && cap=$left
  if ((cap < 10)); then
    STATUS+=("$name: skipped (out of time)")
    FAILED=1
    return 2
  fi
  echo "== $name (limit ${cap}s) $(date +%T)" | tee -a "$log"
  local t0=$(date +%s)
  timeout -k 10 "$cap" "$@" >>"$log" 2>&1
  local rc=$?
  STATUS+=("$name: rc $rc$( ((rc == 124)) && echo ' (timed out)')$( ((rc == 137)) && echo ' (killed: timed out, or out of memory)') in $(($(date +%s) - t0)) s")
  ((rc != 0)) && FAILED=1
  tail -n 4 "$log"
  return $rc
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "cpus $(nproc): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  nvcc --version | tail -n 2
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"

if compgen -G ".whl/*.whl" >/dev/null; then
  SITE=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl && export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi

if [[ -z ${TORCH_CUDA_ARCH_LIST:-} ]]; then
  TORCH_CUDA_ARCH_LIST=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
fi
export TORCH_CUDA_ARCH_LIST MAX_JOBS=${MAX_JOBS:-$(nproc)}
if ! stage "build (arch $TORCH_CUDA_ARCH_LIST)" 300 "$OUT/build.log" \
  "$PY" -m pip install -v --no-build-isolation --no-deps --no-index .; then
  printf '%s\n' "${STATUS[@]}"
  exit 1
fi
readelf -d "$(cd "$OUT" && "$PY" -c "import minidl._C as c; print(c.__file__)")" 2>/dev/null | grep -E "NEEDED.*(stdc|c10|cuda)" | tee -a "$OUT/build.log"
(cd "$OUT" && "$PY" -c "
import torch, minidl
print('backend', minidl.get_backend(), '| CUDA kernels:',
      all(torch._C._dispatch_has_kernel_for_dispatch_key(f'minidl::{op}', 'CUDA')
          for op in ('tanh_forward', 'tanh_backward', 'relu_forward', 'relu_backward', 'linear_forward')))
") 2>&1 | tee -a "$OUT/build.log"

CUDA_TESTS=(tests/test_cuda_kernels.py tests/test_cuda_autograd.py tests/test_cuda_errors.py tests/test_cuda_streams.py
            tests/test_cuda_modules.py)
XDIST=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 8")  # pytest-xdist, where installed: 4x faster
stage "pytest (the CUDA tests)" 150 "$OUT/test_cuda.log" \
  "$PY" -m pytest -q -p no:cacheprovider -rfEs "${CUDA_TESTS[@]}"
stage "pytest (the other tests' CUDA variants)" 240 "$OUT/test_cuda_variants.log" \
  "$PY" -m pytest -q -p no:cacheprovider -rfE $XDIST tests -k cuda "${CUDA_TESTS[@]/#/--ignore=}" \
  --ignore tests/test_cuda_compile.py
if [[ -n ${MINIDL_MNIST_DIR:-} ]]; then
  stage "pairs study on cuda" 90 "$OUT/extras.log" \
    "$PY" -m minidl.pairs --device cuda --data-dir "$MINIDL_MNIST_DIR" --rounds 2 --models convnet,siamese_aux \
    --quiet --out "$OUT/pairs-cuda"
fi
stage "python -m minidl.bench --device cuda --sections conv" 90 "$OUT/bench_cuda.md" \
  "$PY" -m minidl.bench --device cuda --sections conv --json "$OUT/bench_cuda_conv.json"
# No caching allocator: each tensor its own allocation, so that memcheck sees a read past its end.
stage "compute-sanitizer memcheck" 150 "$OUT/extras.log" \
  env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 7 "$PY" tools/cuda_memcheck.py
stage "examples/disk.py --device cuda" 60 "$OUT/extras.log" \
  "$PY" examples/disk.py --device cuda --rounds 3 --log-every 100
stage "python -m minidl.bench --device cuda (the other sections)" 240 "$OUT/bench_cuda.md" \
  "$PY" -m minidl.bench --device cuda --sections ceilings,calls,ops,layers,train,mlp --json "$OUT/bench_cuda.json"
stage "pytest (the rest)" 600 "$OUT/test_rest.log" \
  "$PY" -m pytest -q -p no:cacheprovider -rfE $XDIST tests -k "not cuda" "${CUDA_TESTS[@]/#/--ignore=}" \
  --ignore tests/test_cuda_compile.py

echo "== summary ($(($(date +%s) - START)) s; logs in $OUT)"
printf '%s\n' "${STATUS[@]}"
grep -h -E "^(FAILED|ERROR)|passed|failed" "$OUT"/test_*.log | tail -n 20
exit "$FAILED"
