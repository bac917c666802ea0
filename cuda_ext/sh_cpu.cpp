// Spherical-harmonics stage (CPU): colour per Gaussian from its view direction; forward and backward.
#include "cpu_kernels.h"

namespace gs_cpu {

void sh_fwd(int degree, int64_t n, int K, const float* dirs, const float* coeffs, float* colors) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) gs::sh_eval(degree, K, dirs + 3 * i, coeffs + (int64_t)K * 3 * i, colors + 3 * i);
}

void sh_bwd(int degree, int64_t n, int K, const float* dirs, const float* coeffs, const float* g_colors,
            float* g_coeffs, float* g_dirs) {
  int nb = (degree + 1) * (degree + 1);
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    float* gc = g_coeffs + (int64_t)K * 3 * i;
    gs::sh_eval_vjp(degree, dirs + 3 * i, coeffs + (int64_t)K * 3 * i, g_colors + 3 * i, gc, g_dirs + 3 * i);
    for (int k = nb * 3; k < K * 3; ++k) gc[k] = 0.f;
  }
}

}  // namespace gs_cpu
