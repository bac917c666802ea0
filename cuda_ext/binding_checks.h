// Input checks shared by bindings_cpu.cpp and bindings_cuda.cpp: every tensor handed to a kernel is checked
// for device, dtype and element count (a clear Python error instead of a crash or a silent wrong read), then
// made contiguous (a no-op when it already is; autograd's gradients often are views).
#pragma once
#include <torch/extension.h>

#include <cstdint>
#include <limits>

namespace gs_bind {

// `t` on `dev`, of dtype `dt`, with `numel` elements (-1: any); returns a contiguous tensor.
inline torch::Tensor arg(const torch::Tensor& t, const char* name, const torch::Device& dev, torch::ScalarType dt,
                         int64_t numel = -1) {
  TORCH_CHECK(t.defined(), "spatialvid rasterizer: ", name, " is undefined");
  TORCH_CHECK(t.device() == dev, "spatialvid rasterizer: ", name, " must be on ", dev, " (got ", t.device(), ")");
  TORCH_CHECK(t.scalar_type() == dt, "spatialvid rasterizer: ", name, " must be ", dt, " (got ", t.scalar_type(),
              ")");
  TORCH_CHECK(numel < 0 || t.numel() == numel, "spatialvid rasterizer: ", name, " has ", t.numel(),
              " elements, expected ", numel);
  return t.contiguous();
}

inline torch::Tensor f32(const torch::Tensor& t, const char* name, const torch::Device& dev, int64_t numel = -1) {
  return arg(t, name, dev, torch::kFloat32, numel);
}

inline torch::Tensor i32(const torch::Tensor& t, const char* name, const torch::Device& dev, int64_t numel = -1) {
  return arg(t, name, dev, torch::kInt32, numel);
}

inline void check_count(int64_t n, int64_t width, int64_t height) {
  TORCH_CHECK(n >= 0 && n <= std::numeric_limits<int32_t>::max(), "spatialvid rasterizer: ", n,
              " Gaussians exceed the int32 ids of the tile lists");
  TORCH_CHECK(width > 0 && height > 0 && width <= (1 << 20) && height <= (1 << 20),
              "spatialvid rasterizer: image size ", width, "x", height, " out of range");
}

inline void check_sh(int64_t degree, const torch::Tensor& dirs, const torch::Tensor& coeffs) {
  TORCH_CHECK(degree >= 0 && degree <= 3, "spatialvid rasterizer: SH degree ", degree, " not in 0..3");
  TORCH_CHECK(dirs.dim() == 2 && dirs.size(1) == 3, "spatialvid rasterizer: dirs must be [N,3]");
  TORCH_CHECK(coeffs.dim() == 3 && coeffs.size(0) == dirs.size(0) && coeffs.size(2) == 3,
              "spatialvid rasterizer: SH coefficients must be [N,K,3] with N = ", dirs.size(0));
  TORCH_CHECK((degree + 1) * (degree + 1) <= coeffs.size(1), "spatialvid rasterizer: SH degree ", degree, " needs ",
              (degree + 1) * (degree + 1), " coefficients, got ", coeffs.size(1));
}

// The tile lists index pairs with int32: a frame with more (tile, Gaussian) pairs is refused with this message
// (the Python layer turns it into a one-line SpatialvidError; it looks for "tile intersections").
constexpr const char* kTooManyPairs =
    "too many tile intersections for int32 tile lists: render at a lower resolution or with fewer or smaller "
    "Gaussians";

}  // namespace gs_bind
