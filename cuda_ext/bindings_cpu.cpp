// Thin torch bindings of the CPU kernels (float32 / int32 CPU tensors in, checked and made contiguous; new
// tensors out).
#include <torch/extension.h>

#include <vector>

#include "binding_checks.h"
#include "cpu_kernels.h"

namespace {

const torch::Device kCPU(torch::kCPU);
torch::Tensor c32(const torch::Tensor& t, const char* name, int64_t numel = -1) {
  return gs_bind::f32(t, name, kCPU, numel);
}
torch::Tensor ci32(const torch::Tensor& t, const char* name, int64_t numel = -1) {
  return gs_bind::i32(t, name, kCPU, numel);
}

gs::ProjParams make_params(const torch::Tensor& viewmat, const torch::Tensor& K, int64_t width, int64_t height,
                           double near_plane, double far_plane, double eps2d, bool antialiased) {
  gs::ProjParams P;
  auto v = c32(viewmat, "viewmat", 16);
  auto k = c32(K, "K", 9);
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
  const int64_t n = means.size(0);
  gs_bind::check_count(n, width, height);
  means = c32(means, "means", 3 * n); quats = c32(quats, "quats", 4 * n); scales = c32(scales, "scales", 3 * n);
  auto P = make_params(viewmat, K, width, height, near_plane, far_plane, eps2d, antialiased);
  auto f = torch::TensorOptions().dtype(torch::kFloat32);
  auto m2d = torch::empty({n, 2}, f), con = torch::empty({n, 3}, f), dep = torch::empty({n}, f);
  auto rad = torch::empty({n}, f.dtype(torch::kInt32)), comp = torch::empty({n}, f), cov = torch::empty({n, 3}, f);
  gs_cpu::project_fwd(P, n, means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
                      m2d.data_ptr<float>(), con.data_ptr<float>(), dep.data_ptr<float>(), rad.data_ptr<int32_t>(),
                      comp.data_ptr<float>(), cov.data_ptr<float>());
  return {m2d, con, dep, rad, comp, cov};
}

std::vector<torch::Tensor> project_bwd(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                       torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                       double near_plane, double far_plane, double eps2d, bool antialiased,
                                       torch::Tensor radii, torch::Tensor g_m2d, torch::Tensor g_conic,
                                       torch::Tensor g_depth, torch::Tensor g_comp, bool want_viewmat) {
  const int64_t n = means.size(0);
  gs_bind::check_count(n, width, height);
  means = c32(means, "means", 3 * n); quats = c32(quats, "quats", 4 * n); scales = c32(scales, "scales", 3 * n);
  radii = ci32(radii, "radii", n);
  g_m2d = c32(g_m2d, "grad means2d", 2 * n); g_conic = c32(g_conic, "grad conics", 3 * n);
  g_depth = c32(g_depth, "grad depths", n); g_comp = c32(g_comp, "grad compensation", n);
  auto P = make_params(viewmat, K, width, height, near_plane, far_plane, eps2d, antialiased);
  auto gm = torch::zeros_like(means), gq = torch::zeros_like(quats), gsc = torch::zeros_like(scales);
  auto gv = torch::zeros({4, 4}, means.options());
  float gR[9] = {0}, gt[3] = {0};
  gs_cpu::project_bwd(P, n, means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
                      radii.data_ptr<int32_t>(), g_m2d.data_ptr<float>(), g_conic.data_ptr<float>(),
                      g_depth.data_ptr<float>(), g_comp.data_ptr<float>(), gm.data_ptr<float>(),
                      gq.data_ptr<float>(), gsc.data_ptr<float>(), want_viewmat ? gR : nullptr,
                      want_viewmat ? gt : nullptr);
  float* gvp = gv.data_ptr<float>();
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) gvp[i * 4 + j] = gR[i * 3 + j];
    gvp[i * 4 + 3] = gt[i];
  }
  return {gm, gq, gsc, gv};
}

torch::Tensor sh_fwd(int64_t degree, torch::Tensor dirs, torch::Tensor coeffs) {
  gs_bind::check_sh(degree, dirs, coeffs);
  dirs = c32(dirs, "dirs"); coeffs = c32(coeffs, "SH coefficients");
  int64_t n = dirs.size(0);
  auto out = torch::empty({n, 3}, dirs.options());
  gs_cpu::sh_fwd((int)degree, n, (int)coeffs.size(1), dirs.data_ptr<float>(), coeffs.data_ptr<float>(),
                 out.data_ptr<float>());
  return out;
}

std::vector<torch::Tensor> sh_bwd(int64_t degree, torch::Tensor dirs, torch::Tensor coeffs, torch::Tensor g) {
  gs_bind::check_sh(degree, dirs, coeffs);
  dirs = c32(dirs, "dirs"); coeffs = c32(coeffs, "SH coefficients"); g = c32(g, "grad colors", 3 * dirs.size(0));
  auto gc = torch::empty_like(coeffs), gd = torch::empty_like(dirs);
  gs_cpu::sh_bwd((int)degree, dirs.size(0), (int)coeffs.size(1), dirs.data_ptr<float>(), coeffs.data_ptr<float>(),
                 g.data_ptr<float>(), gc.data_ptr<float>(), gd.data_ptr<float>());
  return {gc, gd};
}

std::vector<torch::Tensor> intersect(torch::Tensor means2d, torch::Tensor cov2d, torch::Tensor opac,
                                     torch::Tensor radii, torch::Tensor depths, int64_t width, int64_t height) {
  const int64_t n = means2d.size(0);
  gs_bind::check_count(n, width, height);
  means2d = c32(means2d, "means2d", 2 * n); cov2d = c32(cov2d, "cov2d", 3 * n); opac = c32(opac, "opacities", n);
  radii = ci32(radii, "radii", n); depths = c32(depths, "depths", n);
  auto io = torch::TensorOptions().dtype(torch::kInt32);
  auto boxes = torch::empty({n, 4}, io), rad = torch::empty({n}, io);
  std::vector<int32_t> gids, offsets;
  const int64_t total = gs_cpu::intersect(n, means2d.data_ptr<float>(), cov2d.data_ptr<float>(), opac.data_ptr<float>(),
                                          radii.data_ptr<int32_t>(), depths.data_ptr<float>(), (int)width, (int)height,
                                          boxes.data_ptr<int32_t>(), rad.data_ptr<int32_t>(), gids, offsets);
  TORCH_CHECK(total >= 0, "spatialvid rasterizer: ", -total, " ", gs_bind::kTooManyPairs);
  auto g = torch::empty({(int64_t)gids.size()}, io), o = torch::empty({(int64_t)offsets.size()}, io);
  if (!gids.empty()) std::memcpy(g.data_ptr<int32_t>(), gids.data(), gids.size() * sizeof(int32_t));
  std::memcpy(o.data_ptr<int32_t>(), offsets.data(), offsets.size() * sizeof(int32_t));
  return {g, o, boxes, rad};
}

std::vector<torch::Tensor> raster_fwd(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                      torch::Tensor opac, torch::Tensor depths, torch::Tensor gids,
                                      torch::Tensor offsets, torch::Tensor boxes, int64_t width, int64_t height) {
  const int64_t n = means2d.size(0);
  gs_bind::check_count(n, width, height);
  const int64_t ntiles = ((width + gs::TILE - 1) / gs::TILE) * ((height + gs::TILE - 1) / gs::TILE);
  means2d = c32(means2d, "means2d", 2 * n); conics = c32(conics, "conics", 3 * n); colors = c32(colors, "colors", 3 * n);
  opac = c32(opac, "opacities", n); depths = c32(depths, "depths", n);
  gids = ci32(gids, "gids"); offsets = ci32(offsets, "offsets", ntiles + 1); boxes = ci32(boxes, "boxes", 4 * n);
  auto f = torch::TensorOptions().dtype(torch::kFloat32);
  auto i = f.dtype(torch::kInt32);
  auto rgb = torch::empty({height, width, 3}, f), alpha = torch::empty({height, width}, f);
  auto dacc = torch::empty({height, width}, f), fT = torch::empty({height, width}, f);
  auto count = torch::empty({height, width}, i), last = torch::empty({height, width}, i);
  gs_cpu::raster_fwd((int)width, (int)height, means2d.data_ptr<float>(), conics.data_ptr<float>(),
                     colors.data_ptr<float>(), opac.data_ptr<float>(), depths.data_ptr<float>(),
                     gids.data_ptr<int32_t>(), offsets.data_ptr<int32_t>(), boxes.data_ptr<int32_t>(),
                     rgb.data_ptr<float>(), alpha.data_ptr<float>(), dacc.data_ptr<float>(), count.data_ptr<int32_t>(),
                     fT.data_ptr<float>(), last.data_ptr<int32_t>());
  return {rgb, alpha, dacc, count, fT, last};
}

torch::Tensor raster_bwd(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors, torch::Tensor opac,
                         torch::Tensor depths, torch::Tensor gids, torch::Tensor offsets, torch::Tensor boxes,
                         torch::Tensor final_T, torch::Tensor last, torch::Tensor g_rgb, torch::Tensor g_alpha,
                         torch::Tensor g_dacc, int64_t width, int64_t height) {
  const int64_t n = means2d.size(0);
  gs_bind::check_count(n, width, height);
  const int64_t ntiles = ((width + gs::TILE - 1) / gs::TILE) * ((height + gs::TILE - 1) / gs::TILE);
  const int64_t npix = width * height;
  means2d = c32(means2d, "means2d", 2 * n); conics = c32(conics, "conics", 3 * n); colors = c32(colors, "colors", 3 * n);
  opac = c32(opac, "opacities", n); depths = c32(depths, "depths", n);
  gids = ci32(gids, "gids"); offsets = ci32(offsets, "offsets", ntiles + 1); boxes = ci32(boxes, "boxes", 4 * n);
  final_T = c32(final_T, "final_T", npix); last = ci32(last, "last", npix);
  g_rgb = c32(g_rgb, "grad rgb", 3 * npix); g_alpha = c32(g_alpha, "grad alpha", npix);
  g_dacc = c32(g_dacc, "grad depth", npix);
  auto out = torch::zeros({n, 10}, means2d.options());
  gs_cpu::raster_bwd((int)width, (int)height, n, means2d.data_ptr<float>(), conics.data_ptr<float>(),
                     colors.data_ptr<float>(), opac.data_ptr<float>(), depths.data_ptr<float>(),
                     gids.data_ptr<int32_t>(), offsets.data_ptr<int32_t>(), boxes.data_ptr<int32_t>(),
                     final_T.data_ptr<float>(), last.data_ptr<int32_t>(), g_rgb.data_ptr<float>(),
                     g_alpha.data_ptr<float>(), g_dacc.data_ptr<float>(), out.data_ptr<float>());
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "spatialvid Gaussian rasterizer, CPU kernels (C++/OpenMP)";
  m.def("project_fwd", &project_fwd);
  m.def("project_bwd", &project_bwd);
  m.def("sh_fwd", &sh_fwd);
  m.def("sh_bwd", &sh_bwd);
  m.def("intersect", &intersect);
  m.def("raster_fwd", &raster_fwd);
  m.def("raster_bwd", &raster_bwd);
  m.def("num_threads", []() { return at::get_num_threads(); });
}
