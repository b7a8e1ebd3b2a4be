// MINIDL_CLONES compiles a loop three times, for AVX-512, AVX2 and baseline x86-64,
// and picks one when the library loads: fast on today's CPUs, still correct on old ones.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define MINIDL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MINIDL_CLONES
#endif
