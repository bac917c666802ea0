// Projection stage (CPU): EWA 3D -> 2D covariance, culling; forward and backward, OpenMP over Gaussians.
#include <omp.h>

#include <vector>

#include "cpu_kernels.h"

namespace gs_cpu {

void project_fwd(const gs::ProjParams& P, int64_t n, const float* means, const float* quats, const float* scales,
                 float* means2d, float* conics, float* depths, int32_t* radii, float* comp, float* cov2d) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    gs::ProjOut o = gs::project_one(P, means + 3 * i, quats + 4 * i, scales + 3 * i);
    means2d[2 * i] = o.mx; means2d[2 * i + 1] = o.my;
    conics[3 * i] = o.ca; conics[3 * i + 1] = o.cb; conics[3 * i + 2] = o.cc;
    depths[i] = o.depth;
    radii[i] = o.radius;
    comp[i] = o.comp;
    cov2d[3 * i] = o.sa; cov2d[3 * i + 1] = o.sb; cov2d[3 * i + 2] = o.sc;
  }
}

void project_bwd(const gs::ProjParams& P, int64_t n, const float* means, const float* quats, const float* scales,
                 const int32_t* radii, const float* g_m2d, const float* g_conic, const float* g_depth,
                 const float* g_comp, float* g_means, float* g_quats, float* g_scales, float* gR, float* gt) {
  int nt = omp_get_max_threads();
  std::vector<double> acc((size_t)nt * 12, 0.0);
#pragma omp parallel if (n > 16384)
  {
    int tid = omp_get_thread_num();
    float lR[9] = {0}, lt[3] = {0};
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float* gm = g_means + 3 * i;
      float* gq = g_quats + 4 * i;
      float* gsc = g_scales + 3 * i;
      // depth has a gradient even when culled? No: culled Gaussians never reach the image; only depth sorting.
      if (radii[i] <= 0) {
        gm[0] = gm[1] = gm[2] = 0.f;
        gq[0] = gq[1] = gq[2] = gq[3] = 0.f;
        gsc[0] = gsc[1] = gsc[2] = 0.f;
        continue;
      }
      gs::project_one_vjp(P, means + 3 * i, quats + 4 * i, scales + 3 * i, g_m2d + 2 * i, g_conic + 3 * i,
                          g_depth[i], g_comp ? g_comp[i] : 0.f, gm, gq, gsc, gR ? lR : nullptr, gR ? lt : nullptr);
    }
    if (gR) {
      for (int k = 0; k < 9; ++k) acc[(size_t)tid * 12 + k] += lR[k];
      for (int k = 0; k < 3; ++k) acc[(size_t)tid * 12 + 9 + k] += lt[k];
    }
  }
  if (gR) {
    for (int k = 0; k < 12; ++k) {
      double s = 0.0;
      for (int t = 0; t < nt; ++t) s += acc[(size_t)t * 12 + k];
      if (k < 9) gR[k] = (float)s; else gt[k - 9] = (float)s;
    }
  }
}

}  // namespace gs_cpu
