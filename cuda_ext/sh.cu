// Spherical-harmonics stage (CUDA): one thread per Gaussian, maths from gs_math.h.
#include "cuda_kernels.h"

namespace gs_cuda {
namespace {

__global__ void sh_fwd_k(int degree, int64_t n, int K, const float* dirs, const float* coeffs, float* colors) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  gs::sh_eval(degree, K, dirs + 3 * i, coeffs + (int64_t)K * 3 * i, colors + 3 * i);
}

__global__ void sh_bwd_k(int degree, int64_t n, int K, const float* dirs, const float* coeffs,
                         const float* g_colors, float* g_coeffs, float* g_dirs) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float* gc = g_coeffs + (int64_t)K * 3 * i;
  gs::sh_eval_vjp(degree, dirs + 3 * i, coeffs + (int64_t)K * 3 * i, g_colors + 3 * i, gc, g_dirs + 3 * i);
  int nb = (degree + 1) * (degree + 1);
  for (int k = nb * 3; k < K * 3; ++k) gc[k] = 0.f;
}

}  // namespace

void sh_fwd(int degree, int64_t n, int K, const float* dirs, const float* coeffs, float* colors, cudaStream_t stream) {
  if (n == 0) return;
  sh_fwd_k<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(degree, n, K, dirs, coeffs, colors);
  check_launch("sh_fwd");
}

void sh_bwd(int degree, int64_t n, int K, const float* dirs, const float* coeffs, const float* g_colors,
            float* g_coeffs, float* g_dirs, cudaStream_t stream) {
  if (n == 0) return;
  sh_bwd_k<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(degree, n, K, dirs, coeffs, g_colors, g_coeffs, g_dirs);
  check_launch("sh_bwd");
}

}  // namespace gs_cuda
