// Thin torch bindings of the CUDA kernels; same Python-facing signatures as bindings_cpu.cpp.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <vector>

#include "cuda_kernels.h"

namespace {

torch::Tensor c32(const torch::Tensor& t) { return t.to(torch::kFloat32).contiguous(); }
torch::Tensor ci32(const torch::Tensor& t) { return t.to(torch::kInt32).contiguous(); }

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check_cuda(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
}

gs::ProjParams make_params(const torch::Tensor& viewmat, const torch::Tensor& K, int64_t width, int64_t height,
                           double near_plane, double far_plane, double eps2d, bool antialiased) {
  gs::ProjParams P;
  auto v = viewmat.to(torch::kCPU, torch::kFloat32).contiguous();
  auto k = K.to(torch::kCPU, torch::kFloat32).contiguous();
  const float* vp = v.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) P.R[i * 3 + j] = vp[i * 4 + j];
    P.t[i] = vp[i * 4 + 3];
  }
  P.fx = kp[0]; P.fy = kp[4]; P.cx = kp[2]; P.cy = kp[5];
  P.width = (int)width; P.height = (int)height;
  P.near_plane = (float)near_plane; P.far_plane = (float)far_plane; P.eps2d = (float)eps2d;
  P.antialiased = antialiased ? 1 : 0;
  return P;
}

std::vector<torch::Tensor> project_fwd(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                       torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                       double near_plane, double far_plane, double eps2d, bool antialiased) {
  check_cuda(means, "means");
  const at::cuda::CUDAGuard guard(means.device());
  means = c32(means); quats = c32(quats); scales = c32(scales);
  auto P = make_params(viewmat, K, width, height, near_plane, far_plane, eps2d, antialiased);
  int64_t n = means.size(0);
  auto f = means.options();
  auto m2d = torch::empty({n, 2}, f), con = torch::empty({n, 3}, f), dep = torch::empty({n}, f);
  auto rad = torch::empty({n}, f.dtype(torch::kInt32)), comp = torch::empty({n}, f), cov = torch::empty({n, 3}, f);
  gs_cuda::project_fwd(P, n, means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
                       m2d.data_ptr<float>(), con.data_ptr<float>(), dep.data_ptr<float>(), rad.data_ptr<int32_t>(),
                       comp.data_ptr<float>(), cov.data_ptr<float>(), stream());
  return {m2d, con, dep, rad, comp, cov};
}

std::vector<torch::Tensor> project_bwd(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                       torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                       double near_plane, double far_plane, double eps2d, bool antialiased,
                                       torch::Tensor radii, torch::Tensor g_m2d, torch::Tensor g_conic,
                                       torch::Tensor g_depth, torch::Tensor g_comp, bool want_viewmat) {
  const at::cuda::CUDAGuard guard(means.device());
  means = c32(means); quats = c32(quats); scales = c32(scales); radii = ci32(radii);
  g_m2d = c32(g_m2d); g_conic = c32(g_conic); g_depth = c32(g_depth); g_comp = c32(g_comp);
  auto P = make_params(viewmat, K, width, height, near_plane, far_plane, eps2d, antialiased);
  int64_t n = means.size(0);
  auto gm = torch::zeros_like(means), gq = torch::zeros_like(quats), gsc = torch::zeros_like(scales);
  torch::Tensor per = want_viewmat ? torch::zeros({n, 12}, means.options()) : torch::Tensor();
  gs_cuda::project_bwd(P, n, means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
                       radii.data_ptr<int32_t>(), g_m2d.data_ptr<float>(), g_conic.data_ptr<float>(),
                       g_depth.data_ptr<float>(), g_comp.data_ptr<float>(), gm.data_ptr<float>(),
                       gq.data_ptr<float>(), gsc.data_ptr<float>(), want_viewmat ? per.data_ptr<float>() : nullptr, stream());
  auto gv = torch::zeros({4, 4}, means.options());
  if (want_viewmat) {
    auto s = per.sum(0);
    gv.index_put_({torch::indexing::Slice(0, 3), torch::indexing::Slice(0, 3)}, s.slice(0, 0, 9).reshape({3, 3}));
    gv.index_put_({torch::indexing::Slice(0, 3), 3}, s.slice(0, 9, 12));
  }
  return {gm, gq, gsc, gv};
}

torch::Tensor sh_fwd(int64_t degree, torch::Tensor dirs, torch::Tensor coeffs) {
  const at::cuda::CUDAGuard guard(dirs.device());
  dirs = c32(dirs); coeffs = c32(coeffs);
  int64_t n = dirs.size(0);
  auto out = torch::empty({n, 3}, dirs.options());
  gs_cuda::sh_fwd((int)degree, n, (int)coeffs.size(1), dirs.data_ptr<float>(), coeffs.data_ptr<float>(),
                  out.data_ptr<float>(), stream());
  return out;
}

std::vector<torch::Tensor> sh_bwd(int64_t degree, torch::Tensor dirs, torch::Tensor coeffs, torch::Tensor g) {
  const at::cuda::CUDAGuard guard(dirs.device());
  dirs = c32(dirs); coeffs = c32(coeffs); g = c32(g);
  auto gc = torch::empty_like(coeffs), gd = torch::empty_like(dirs);
  gs_cuda::sh_bwd((int)degree, dirs.size(0), (int)coeffs.size(1), dirs.data_ptr<float>(), coeffs.data_ptr<float>(),
                  g.data_ptr<float>(), gc.data_ptr<float>(), gd.data_ptr<float>(), stream());
  return {gc, gd};
}

std::vector<torch::Tensor> intersect(torch::Tensor means2d, torch::Tensor cov2d, torch::Tensor opac,
                                     torch::Tensor radii, torch::Tensor depths, int64_t width, int64_t height) {
  const at::cuda::CUDAGuard guard(means2d.device());
  means2d = c32(means2d); cov2d = c32(cov2d); opac = c32(opac); radii = ci32(radii); depths = c32(depths);
  int64_t n = means2d.size(0);
  auto io = means2d.options().dtype(torch::kInt32);
  auto boxes = torch::empty({n, 4}, io), rad = torch::empty({n}, io);
  auto counts = torch::empty({n}, means2d.options().dtype(torch::kInt64));
  gs_cuda::intersect_count(n, means2d.data_ptr<float>(), cov2d.data_ptr<float>(), opac.data_ptr<float>(),
                           radii.data_ptr<int32_t>(), (int)width, (int)height, boxes.data_ptr<int32_t>(),
                           rad.data_ptr<int32_t>(), counts.data_ptr<int64_t>(), stream());
  auto cum = torch::cumsum(counts, 0);
  int64_t total = n ? cum[n - 1].item<int64_t>() : 0;
  const int T = gs::TILE;
  int64_t ntiles = ((width + T - 1) / T) * ((height + T - 1) / T);
  auto keys = torch::empty({total}, counts.options());
  auto ids = torch::empty({total}, io);
  gs_cuda::intersect_fill(n, depths.data_ptr<float>(), boxes.data_ptr<int32_t>(), cum.data_ptr<int64_t>(),
                          (int)width, keys.data_ptr<int64_t>(), ids.data_ptr<int32_t>(), stream());
  auto sorted = torch::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  auto order = std::get<1>(sorted);
  auto gids = ids.index_select(0, order).contiguous();
  auto tiles = torch::bitwise_right_shift(std::get<0>(sorted), 32);
  auto per_tile = torch::bincount(tiles, {}, ntiles);
  auto offsets = torch::zeros({ntiles + 1}, io);
  offsets.slice(0, 1).copy_(torch::cumsum(per_tile, 0));
  return {gids, offsets, boxes, rad};
}

std::vector<torch::Tensor> raster_fwd(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                      torch::Tensor opac, torch::Tensor depths, torch::Tensor gids,
                                      torch::Tensor offsets, torch::Tensor boxes, int64_t width, int64_t height) {
  const at::cuda::CUDAGuard guard(means2d.device());
  means2d = c32(means2d); conics = c32(conics); colors = c32(colors); opac = c32(opac); depths = c32(depths);
  gids = ci32(gids); offsets = ci32(offsets);
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
  const at::cuda::CUDAGuard guard(means2d.device());
  means2d = c32(means2d); conics = c32(conics); colors = c32(colors); opac = c32(opac); depths = c32(depths);
  gids = ci32(gids); offsets = ci32(offsets); final_T = c32(final_T); last = ci32(last);
  g_rgb = c32(g_rgb); g_alpha = c32(g_alpha); g_dacc = c32(g_dacc);
  int64_t n = means2d.size(0);
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
