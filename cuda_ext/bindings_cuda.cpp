// Thin torch bindings of the CUDA kernels; same Python-facing signatures as bindings_cpu.cpp.
// Every input is checked (device = the Gaussians' CUDA device, dtype, element count) and made contiguous.
// The camera (viewmat, K) stays on the device and is read by the kernels, so a step needs no host sync except
// the one that sizes the tile-intersection arrays (intersect).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <limits>
#include <vector>

#include "binding_checks.h"
#include "cuda_kernels.h"

namespace {

using gs_bind::f32;
using gs_bind::i32;

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

torch::Device cuda_device(const torch::Tensor& means) {
  TORCH_CHECK(means.defined() && means.is_cuda(), "spatialvid rasterizer (cuda): means must be a CUDA tensor (got ",
              means.defined() ? means.device().str() : std::string("undefined"), ")");
  return means.device();
}

// Scalars of the projection; R, t, fx, fy, cx, cy come from the device viewmat / K inside the kernels.
gs::ProjParams make_params(int64_t width, int64_t height, double near_plane, double far_plane, double eps2d,
                           bool antialiased) {
  gs::ProjParams P{};
  P.width = (int)width; P.height = (int)height;
  P.near_plane = (float)near_plane; P.far_plane = (float)far_plane; P.eps2d = (float)eps2d;
  P.antialiased = antialiased ? 1 : 0;
  return P;
}

// The projection's inputs (both directions): float32, contiguous, on `dev`, the sizes n Gaussians need.
void check_projection_inputs(torch::Tensor& means, torch::Tensor& quats, torch::Tensor& scales,
                             torch::Tensor& viewmat, torch::Tensor& K, const torch::Device& dev, int64_t n) {
  means = f32(means, "means", dev, 3 * n); quats = f32(quats, "quats", dev, 4 * n);
  scales = f32(scales, "scales", dev, 3 * n);
  viewmat = f32(viewmat, "viewmat", dev, 16); K = f32(K, "K", dev, 9);
}

std::vector<torch::Tensor> project_fwd(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                       torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                       double near_plane, double far_plane, double eps2d, bool antialiased) {
  const auto dev = cuda_device(means);
  const at::cuda::CUDAGuard guard(dev);
  const int64_t n = means.size(0);
  gs_bind::check_count(n, width, height);
  check_projection_inputs(means, quats, scales, viewmat, K, dev, n);
  auto P = make_params(width, height, near_plane, far_plane, eps2d, antialiased);
  auto f = means.options();
  auto m2d = torch::empty({n, 2}, f), con = torch::empty({n, 3}, f), dep = torch::empty({n}, f);
  auto rad = torch::empty({n}, f.dtype(torch::kInt32)), comp = torch::empty({n}, f), cov = torch::empty({n, 3}, f);
  gs_cuda::project_fwd(P, viewmat.data_ptr<float>(), K.data_ptr<float>(), n, means.data_ptr<float>(),
                       quats.data_ptr<float>(), scales.data_ptr<float>(), m2d.data_ptr<float>(), con.data_ptr<float>(),
                       dep.data_ptr<float>(), rad.data_ptr<int32_t>(), comp.data_ptr<float>(), cov.data_ptr<float>(),
                       stream());
  return {m2d, con, dep, rad, comp, cov};
}

std::vector<torch::Tensor> project_bwd(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                       torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                       double near_plane, double far_plane, double eps2d, bool antialiased,
                                       torch::Tensor radii, torch::Tensor g_m2d, torch::Tensor g_conic,
                                       torch::Tensor g_depth, torch::Tensor g_comp, bool want_viewmat) {
  const auto dev = cuda_device(means);
  const at::cuda::CUDAGuard guard(dev);
  const int64_t n = means.size(0);
  gs_bind::check_count(n, width, height);
  check_projection_inputs(means, quats, scales, viewmat, K, dev, n);
  radii = i32(radii, "radii", dev, n);
  g_m2d = f32(g_m2d, "grad means2d", dev, 2 * n); g_conic = f32(g_conic, "grad conics", dev, 3 * n);
  g_depth = f32(g_depth, "grad depths", dev, n); g_comp = f32(g_comp, "grad compensation", dev, n);
  auto P = make_params(width, height, near_plane, far_plane, eps2d, antialiased);
  auto gm = torch::zeros_like(means), gq = torch::zeros_like(quats), gsc = torch::zeros_like(scales);
  torch::Tensor per = want_viewmat ? torch::zeros({n, 12}, means.options()) : torch::Tensor();
  gs_cuda::project_bwd(P, viewmat.data_ptr<float>(), K.data_ptr<float>(), n, means.data_ptr<float>(),
                       quats.data_ptr<float>(), scales.data_ptr<float>(), radii.data_ptr<int32_t>(),
                       g_m2d.data_ptr<float>(), g_conic.data_ptr<float>(), g_depth.data_ptr<float>(),
                       g_comp.data_ptr<float>(), gm.data_ptr<float>(), gq.data_ptr<float>(), gsc.data_ptr<float>(),
                       want_viewmat ? per.data_ptr<float>() : nullptr, stream());
  auto gv = torch::zeros({4, 4}, means.options());
  if (want_viewmat) {
    auto s = per.sum(0);
    gv.index_put_({torch::indexing::Slice(0, 3), torch::indexing::Slice(0, 3)}, s.slice(0, 0, 9).reshape({3, 3}));
    gv.index_put_({torch::indexing::Slice(0, 3), 3}, s.slice(0, 9, 12));
  }
  return {gm, gq, gsc, gv};
}

torch::Tensor sh_fwd(int64_t degree, torch::Tensor dirs, torch::Tensor coeffs) {
  const auto dev = cuda_device(dirs);
  const at::cuda::CUDAGuard guard(dev);
  gs_bind::check_sh(degree, dirs, coeffs);
  dirs = f32(dirs, "dirs", dev); coeffs = f32(coeffs, "SH coefficients", dev);
  const int64_t n = dirs.size(0);
  auto out = torch::empty({n, 3}, dirs.options());
  gs_cuda::sh_fwd((int)degree, n, (int)coeffs.size(1), dirs.data_ptr<float>(), coeffs.data_ptr<float>(),
                  out.data_ptr<float>(), stream());
  return out;
}

std::vector<torch::Tensor> sh_bwd(int64_t degree, torch::Tensor dirs, torch::Tensor coeffs, torch::Tensor g) {
  const auto dev = cuda_device(dirs);
  const at::cuda::CUDAGuard guard(dev);
  gs_bind::check_sh(degree, dirs, coeffs);
  dirs = f32(dirs, "dirs", dev); coeffs = f32(coeffs, "SH coefficients", dev);
  g = f32(g, "grad colors", dev, 3 * dirs.size(0));
  auto gc = torch::empty_like(coeffs), gd = torch::empty_like(dirs);
  gs_cuda::sh_bwd((int)degree, dirs.size(0), (int)coeffs.size(1), dirs.data_ptr<float>(), coeffs.data_ptr<float>(),
                  g.data_ptr<float>(), gc.data_ptr<float>(), gd.data_ptr<float>(), stream());
  return {gc, gd};
}

std::vector<torch::Tensor> intersect(torch::Tensor means2d, torch::Tensor cov2d, torch::Tensor opac,
                                     torch::Tensor radii, torch::Tensor depths, int64_t width, int64_t height) {
  const auto dev = cuda_device(means2d);
  const at::cuda::CUDAGuard guard(dev);
  const int64_t n = means2d.size(0);
  gs_bind::check_count(n, width, height);
  means2d = f32(means2d, "means2d", dev, 2 * n); cov2d = f32(cov2d, "cov2d", dev, 3 * n);
  opac = f32(opac, "opacities", dev, n); radii = i32(radii, "radii", dev, n); depths = f32(depths, "depths", dev, n);
  auto io = means2d.options().dtype(torch::kInt32);
  auto boxes = torch::empty({n, 4}, io), rad = torch::empty({n}, io);
  auto counts = torch::empty({n}, means2d.options().dtype(torch::kInt64));
  gs_cuda::intersect_count(n, means2d.data_ptr<float>(), cov2d.data_ptr<float>(), opac.data_ptr<float>(),
                           radii.data_ptr<int32_t>(), (int)width, (int)height, boxes.data_ptr<int32_t>(),
                           rad.data_ptr<int32_t>(), counts.data_ptr<int64_t>(), stream());
  auto cum = torch::cumsum(counts, 0);
  // the step's one necessary host sync: the number of (tile, Gaussian) pairs sizes the arrays below
  const int64_t total = n ? cum[n - 1].item<int64_t>() : 0;
  TORCH_CHECK(total <= std::numeric_limits<int32_t>::max(), "spatialvid rasterizer: ", total, " ",
              gs_bind::kTooManyPairs);
  const int T = gs::TILE;
  const int64_t ntiles = ((width + T - 1) / T) * ((height + T - 1) / T);
  auto keys = torch::empty({total}, counts.options());
  auto ids = torch::empty({total}, io);
  gs_cuda::intersect_fill(n, depths.data_ptr<float>(), boxes.data_ptr<int32_t>(), cum.data_ptr<int64_t>(),
                          (int)width, keys.data_ptr<int64_t>(), ids.data_ptr<int32_t>(), stream());
  auto sorted = torch::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  auto order = std::get<1>(sorted);
  auto gids = ids.index_select(0, order).contiguous();
  auto tiles = torch::bitwise_right_shift(std::get<0>(sorted), 32).contiguous();
  // offsets[t] = first pair of tile t (binary search in the sorted tile ids: no host sync, unlike bincount)
  auto bounds = torch::arange(ntiles + 1, tiles.options());
  auto offsets = torch::searchsorted(tiles, bounds, /*out_int32=*/true, /*right=*/false);
  return {gids, offsets, boxes, rad};
}

// The rasterizer's per-Gaussian inputs and tile lists (both directions): float32 / int32, contiguous, on `dev`.
void check_raster_inputs(torch::Tensor& means2d, torch::Tensor& conics, torch::Tensor& colors, torch::Tensor& opac,
                         torch::Tensor& depths, torch::Tensor& gids, torch::Tensor& offsets,
                         const torch::Device& dev, int64_t n, int64_t width, int64_t height) {
  const int T = gs::TILE;
  const int64_t ntiles = ((width + T - 1) / T) * ((height + T - 1) / T);
  means2d = f32(means2d, "means2d", dev, 2 * n); conics = f32(conics, "conics", dev, 3 * n);
  colors = f32(colors, "colors", dev, 3 * n); opac = f32(opac, "opacities", dev, n);
  depths = f32(depths, "depths", dev, n);
  gids = i32(gids, "gids", dev); offsets = i32(offsets, "offsets", dev, ntiles + 1);
}

std::vector<torch::Tensor> raster_fwd(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                      torch::Tensor opac, torch::Tensor depths, torch::Tensor gids,
                                      torch::Tensor offsets, torch::Tensor boxes, int64_t width, int64_t height) {
  const auto dev = cuda_device(means2d);
  const at::cuda::CUDAGuard guard(dev);
  const int64_t n = means2d.size(0);
  gs_bind::check_count(n, width, height);
  check_raster_inputs(means2d, conics, colors, opac, depths, gids, offsets, dev, n, width, height);
  auto f = means2d.options();
  auto i = f.dtype(torch::kInt32);
  auto rgb = torch::empty({height, width, 3}, f), alpha = torch::empty({height, width}, f);
  auto dacc = torch::empty({height, width}, f), fT = torch::empty({height, width}, f);
  auto count = torch::empty({height, width}, i), last = torch::empty({height, width}, i);
  gs_cuda::raster_fwd((int)width, (int)height, means2d.data_ptr<float>(), conics.data_ptr<float>(),
                      colors.data_ptr<float>(), opac.data_ptr<float>(), depths.data_ptr<float>(),
                      gids.data_ptr<int32_t>(), offsets.data_ptr<int32_t>(), rgb.data_ptr<float>(),
                      alpha.data_ptr<float>(), dacc.data_ptr<float>(), count.data_ptr<int32_t>(),
                      fT.data_ptr<float>(), last.data_ptr<int32_t>(), stream());
  return {rgb, alpha, dacc, count, fT, last};
}

torch::Tensor raster_bwd(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors, torch::Tensor opac,
                         torch::Tensor depths, torch::Tensor gids, torch::Tensor offsets, torch::Tensor boxes,
                         torch::Tensor final_T, torch::Tensor last, torch::Tensor g_rgb, torch::Tensor g_alpha,
                         torch::Tensor g_dacc, int64_t width, int64_t height) {
  const auto dev = cuda_device(means2d);
  const at::cuda::CUDAGuard guard(dev);
  const int64_t n = means2d.size(0);
  gs_bind::check_count(n, width, height);
  const int64_t npix = width * height;
  check_raster_inputs(means2d, conics, colors, opac, depths, gids, offsets, dev, n, width, height);
  final_T = f32(final_T, "final_T", dev, npix); last = i32(last, "last", dev, npix);
  g_rgb = f32(g_rgb, "grad rgb", dev, 3 * npix); g_alpha = f32(g_alpha, "grad alpha", dev, npix);
  g_dacc = f32(g_dacc, "grad depth", dev, npix);
  auto out = torch::zeros({n, 10}, means2d.options());
  gs_cuda::raster_bwd((int)width, (int)height, means2d.data_ptr<float>(), conics.data_ptr<float>(),
                      colors.data_ptr<float>(), opac.data_ptr<float>(), depths.data_ptr<float>(),
                      gids.data_ptr<int32_t>(), offsets.data_ptr<int32_t>(), final_T.data_ptr<float>(),
                      last.data_ptr<int32_t>(), g_rgb.data_ptr<float>(), g_alpha.data_ptr<float>(),
                      g_dacc.data_ptr<float>(), out.data_ptr<float>(), stream());
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "spatialvid Gaussian rasterizer, CUDA kernels";
  m.def("project_fwd", &project_fwd);
  m.def("project_bwd", &project_bwd);
  m.def("sh_fwd", &sh_fwd);
  m.def("sh_bwd", &sh_bwd);
  m.def("intersect", &intersect);
  m.def("raster_fwd", &raster_fwd);
  m.def("raster_bwd", &raster_bwd);
}
