// Input validation shared by every kernel (CPU and CUDA): each message names the op and shows
// the expected and actual shapes, dtypes or devices, so a user never gets a segfault or a guess.
// `op` is anything printable: a string, or an Indexed name such as "minidl.mlp_forward (layer 2)",
// which is formatted only when a check fails.
#pragma once
#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/util/ArrayRef.h>

#include <algorithm>
#include <initializer_list>
#include <ostream>
#include <utility>
#include <vector>

namespace minidl {

struct Indexed {
  const char* op;
  const char* what;  // "layer", "parameter"
  size_t index;
};
inline std::ostream& operator<<(std::ostream& os, const Indexed& n) {
  return os << n.op << " (" << n.what << " " << n.index << ")";
}

template <typename Op>
void check_float(const at::Tensor& t, const Op& op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": expected ", name,
                   " to be float32 or float64, got ", t.scalar_type());
}

// `t` must share dtype and device with `ref`.
template <typename Op>
void check_like(const at::Tensor& t, const at::Tensor& ref, const Op& op, const char* name, const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": expected ", name, " on ", ref.device(), " like ", ref_name,
              ", got ", t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": expected ", name, " of dtype ",
                   ref.scalar_type(), " like ", ref_name, ", got ", t.scalar_type());
}

template <typename Op>
void check_dim(const at::Tensor& t, int64_t dim, const Op& op, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": expected ", name, " with ", dim, " dimensions, got shape ",
                    t.sizes());
}

template <typename Op>
void check_shape(const at::Tensor& t, at::IntArrayRef expected, const Op& op, const char* name) {
  TORCH_CHECK_VALUE(t.sizes() == expected, op, ": expected ", name, " of shape ", expected, ", got ",
                    t.sizes());
}

// input [N, in] and weight [out, in] of one dtype and device.
template <typename Op>
void check_linear(const at::Tensor& input, const at::Tensor& weight, const Op& op) {
  check_float(weight, op, "weight");
  check_like(input, weight, op, "input", "weight");
  check_dim(input, 2, op, "input");
  check_dim(weight, 2, op, "weight");
  TORCH_CHECK_VALUE(input.size(1) == weight.size(1), op, ": expected input of shape [N, ", weight.size(1),
                    "] for weight of shape ", weight.sizes(), ", got ", input.sizes());
}

// A tensor and its name in messages; `t` null for an absent optional tensor, `index` >= 0 for one of a list.
struct Named {
  const at::Tensor* t;
  const char* name;
  int64_t index = -1;
};
inline std::ostream& operator<<(std::ostream& os, const Named& n) {
  return n.index < 0 ? os << n.name : os << n.name << "[" << n.index << "]";
}

// t's bytes as a view of mask, a byte map of t's storage from its byte lo: [*sizes, itemsize], the dimensions
// of size 1 or stride 0 left out (they add no byte).
inline at::Tensor byte_view(const at::Tensor& mask, const at::Tensor& t, int64_t lo) {
  const int64_t k = static_cast<int64_t>(t.itemsize());
  std::vector<int64_t> sizes, strides;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) > 1 && t.stride(d) != 0) {
      sizes.push_back(t.size(d));
      strides.push_back(t.stride(d) * k);
    }
  }
  sizes.push_back(k);
  strides.push_back(1);
  return mask.as_strided(sizes, strides, t.storage_offset() * k - lo);
}

// Whether a and b share a byte of memory. Only tensors of one storage whose spans (first to last byte)
// meet can (two storages over one memory, as from_numpy twice makes, are not seen); dense ones then do,
// strided ones are compared on a byte map of where their spans meet.
inline bool shares_memory(const at::Tensor& a, const at::Tensor& b) {
  if (!a.is_alias_of(b) || a.numel() == 0 || b.numel() == 0) return false;
  const auto span = [](const at::Tensor& t) {
    int64_t last = 0;
    for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
    const int64_t first = t.storage_offset() * static_cast<int64_t>(t.itemsize());
    return std::make_pair(first, first + (last + 1) * static_cast<int64_t>(t.itemsize()));
  };
  const auto [a0, a1] = span(a);
  const auto [b0, b1] = span(b);
  if (a1 <= b0 || b1 <= a0) return false;
  if (a.is_non_overlapping_and_dense() && b.is_non_overlapping_and_dense()) return true;
  const int64_t lo = std::min(a0, b0);
  const at::Tensor mask = at::zeros({std::max(a1, b1) - lo}, at::TensorOptions().dtype(at::kByte));
  byte_view(mask, a, lo).fill_(1);
  return byte_view(mask, b, lo).any().item<bool>();
}

// A tensor the op writes into: an expanded one (stride 0) would take several values in one element.
template <typename Op, typename Name>
void check_written(const at::Tensor& t, const Op& op, const Name& name) {
  TORCH_CHECK_VALUE(at::has_internal_overlap(t) != at::MemOverlap::Yes, op, ": expected ", name,
                    " whose elements have memory of their own (the op writes it), got strides ", t.strides());
}

// What an op writes must share no memory with what it reads (a gradient that is the weight would change the
// weight before its last read: a silently wrong answer), nor with another tensor of `written`.
template <typename Op>
void check_apart(c10::ArrayRef<Named> written, c10::ArrayRef<Named> read, const Op& op) {
  for (size_t i = 0; i < written.size(); ++i) {
    const Named& w = written[i];
    if (w.t == nullptr) continue;
    for (const Named& r : read)
      TORCH_CHECK_VALUE(r.t == nullptr || !shares_memory(*w.t, *r.t), op, ": expected ", w,
                        " to share no memory with ", r, " (the op writes ", w, " while it reads ", r, ")");
    for (size_t j = i + 1; j < written.size(); ++j)
      TORCH_CHECK_VALUE(written[j].t == nullptr || !shares_memory(*w.t, *written[j].t), op, ": expected ", w,
                        " and ", written[j], " to share no memory (the op writes both)");
  }
}

// Checks shared by every elementwise backward: grad_output must match the saved tensor.
template <typename Op>
void check_elementwise_backward(const at::Tensor& grad_output, const at::Tensor& saved, const Op& op,
                                const char* saved_name) {
  check_float(saved, op, saved_name);
  check_like(grad_output, saved, op, "grad_output", saved_name);
  check_shape(grad_output, saved.sizes(), op, "grad_output");
}

// Whether two tensors of these lists share memory: such lists step one tensor after another, since a
// multi-tensor update would race on it (CUDA) or apply each step to the state before the other (_foreach).
inline bool shares_storage(std::initializer_list<at::TensorList> lists) {
  std::vector<const void*> storages;
  for (at::TensorList list : lists)
    for (const at::Tensor& t : list)
      storages.push_back(t.has_storage() ? static_cast<const void*>(t.storage().unsafeGetStorageImpl())
                                         : static_cast<const void*>(t.unsafeGetTensorImpl()));
  std::sort(storages.begin(), storages.end());
  return std::adjacent_find(storages.begin(), storages.end()) != storages.end();
}

}  // namespace minidl
