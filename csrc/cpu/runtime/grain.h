// The fewest elements one thread's task gets in the CPU loops (at::parallel_for's grain): below
// about 32K elements, handing work to another thread costs more than it saves.
#pragma once
#include <algorithm>
#include <cstdint>

namespace minidl {
namespace cpu {

constexpr int64_t kGrain = 32768;

// The grain of a loop over indices that each stand for `elements` elements (a matrix's rows, say).
inline int64_t grain_for(int64_t elements) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(elements, 1)); }

}  // namespace cpu
}  // namespace minidl
