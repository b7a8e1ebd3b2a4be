// The fewest elements one thread's task gets in the CPU loops (at::parallel_for's grain): below
// about 32K elements, handing work to another thread costs more than it saves.
#pragma once
#include <cstdint>

namespace minidl {
namespace cpu {

constexpr int64_t kGrain = 32768;

}  // namespace cpu
}  // namespace minidl
