// MINIDL_CLONES compiles a loop three times, for AVX-512, x86-64-v3 (AVX2 and FMA) and baseline
// x86-64, and picks one when the library loads: fast on today's CPUs, still correct on old ones.
// The build forbids implicit contraction (-ffp-contract=off), so every clone rounds alike; an
// explicit std::fma rounds once everywhere too: one instruction on the first two clones, a libm
// call on the baseline one.
#pragma once

#include <c10/macros/Macros.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define MINIDL_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define MINIDL_CLONES
#endif

// For the scalar helpers that the cloned loops call (tanh_f32, ...): inlined into every clone, so
// that each compiles them for its own instruction set; a helper left out of line is compiled for
// baseline x86-64 only, where std::fma is a library call per operation.
#define MINIDL_INLINE C10_ALWAYS_INLINE
