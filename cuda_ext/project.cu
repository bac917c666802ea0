// Projection stage (CUDA): one thread per Gaussian, maths from gs_math.h (shared with the CPU kernels).
#include "cuda_kernels.h"

namespace gs_cuda {
namespace {

// The camera of P from the device viewmat (row-major 4x4) and K (3x3): every thread reads the same 25 floats.
__device__ __forceinline__ gs::ProjParams with_camera(gs::ProjParams P, const float* vm, const float* K) {
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) P.R[i * 3 + j] = vm[i * 4 + j];
    P.t[i] = vm[i * 4 + 3];
  }
  P.fx = K[0]; P.fy = K[4]; P.cx = K[2]; P.cy = K[5];
  return P;
}

__global__ void project_fwd_k(gs::ProjParams P0, const float* vm, const float* Km, int64_t n, const float* means,
                              const float* quats, const float* scales, float* means2d, float* conics, float* depths,
                              int32_t* radii, float* comp, float* cov2d) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const gs::ProjParams P = with_camera(P0, vm, Km);
  gs::ProjOut o = gs::project_one(P, means + 3 * i, quats + 4 * i, scales + 3 * i);
  means2d[2 * i] = o.mx; means2d[2 * i + 1] = o.my;
  conics[3 * i] = o.ca; conics[3 * i + 1] = o.cb; conics[3 * i + 2] = o.cc;
  depths[i] = o.depth;
  radii[i] = o.radius;
  comp[i] = o.comp;
  cov2d[3 * i] = o.sa; cov2d[3 * i + 1] = o.sb; cov2d[3 * i + 2] = o.sc;
}

__global__ void project_bwd_k(gs::ProjParams P0, const float* vm, const float* Km, int64_t n, const float* means,
                              const float* quats, const float* scales, const int32_t* radii, const float* g_m2d,
                              const float* g_conic, const float* g_depth, const float* g_comp, float* g_means,
                              float* g_quats, float* g_scales, float* g_view) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const gs::ProjParams P = with_camera(P0, vm, Km);
  float* gm = g_means + 3 * i;
  float* gq = g_quats + 4 * i;
  float* gsc = g_scales + 3 * i;
  if (radii[i] <= 0) {
    gm[0] = gm[1] = gm[2] = 0.f;
    gq[0] = gq[1] = gq[2] = gq[3] = 0.f;
    gsc[0] = gsc[1] = gsc[2] = 0.f;
    return;
  }
  float gR[9] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, gt[3] = {0.f, 0.f, 0.f};
  gs::project_one_vjp(P, means + 3 * i, quats + 4 * i, scales + 3 * i, g_m2d + 2 * i, g_conic + 3 * i,
                      g_depth[i], g_comp ? g_comp[i] : 0.f, gm, gq, gsc, g_view ? gR : nullptr,
                      g_view ? gt : nullptr);
  if (g_view) {
    for (int k = 0; k < 9; ++k) g_view[12 * i + k] = gR[k];
    for (int k = 0; k < 3; ++k) g_view[12 * i + 9 + k] = gt[k];
  }
}

}  // namespace

void project_fwd(const gs::ProjParams& P, const float* viewmat, const float* K, int64_t n, const float* means,
                 const float* quats, const float* scales, float* means2d, float* conics, float* depths,
                 int32_t* radii, float* comp, float* cov2d, cudaStream_t stream) {
  if (n == 0) return;
  int threads = 256;
  project_fwd_k<<<(unsigned)((n + threads - 1) / threads), threads, 0, stream>>>(
      P, viewmat, K, n, means, quats, scales, means2d, conics, depths, radii, comp, cov2d);
  check_launch("project_fwd");
}

void project_bwd(const gs::ProjParams& P, const float* viewmat, const float* K, int64_t n, const float* means,
                 const float* quats, const float* scales, const int32_t* radii, const float* g_m2d,
                 const float* g_conic, const float* g_depth, const float* g_comp, float* g_means, float* g_quats,
                 float* g_scales, float* g_view, cudaStream_t stream) {
  if (n == 0) return;
  int threads = 256;
  project_bwd_k<<<(unsigned)((n + threads - 1) / threads), threads, 0, stream>>>(
      P, viewmat, K, n, means, quats, scales, radii, g_m2d, g_conic, g_depth, g_comp, g_means, g_quats, g_scales,
      g_view);
  check_launch("project_bwd");
}

}  // namespace gs_cuda
