// CUDA launchers of the spatialvid rasterizer (raw device pointers, float32, contiguous; no torch headers so
// every .cu compiles stand-alone with nvcc). Bindings: bindings_cuda.cpp. All launch on `stream`, and every
// launch is followed by check_launch (a bad launch throws std::runtime_error, a Python RuntimeError).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "gs_math.h"

namespace gs_cuda {

// Throws if the kernel launch just made failed (bad configuration, no device, an earlier asynchronous error).
inline void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("spatialvid CUDA kernel ") + kernel + " failed: " + cudaGetErrorName(e) +
                             ": " + cudaGetErrorString(e));
}

// viewmat [4,4] (row-major, world-to-camera) and K [3,3] are device pointers; P holds the other fields (its
// R, t, fx, fy, cx, cy are filled from them in the kernels, so no host copy of the camera is needed).
void project_fwd(const gs::ProjParams& P, const float* viewmat, const float* K, int64_t n, const float* means,
                 const float* quats, const float* scales, float* means2d, float* conics, float* depths,
                 int32_t* radii, float* comp, float* cov2d, cudaStream_t stream);
// g_view: [n,12] per-Gaussian viewmat-gradient contributions (R row-major 9, t 3), or null
void project_bwd(const gs::ProjParams& P, const float* viewmat, const float* K, int64_t n, const float* means,
                 const float* quats, const float* scales, const int32_t* radii, const float* g_m2d,
                 const float* g_conic, const float* g_depth, const float* g_comp, float* g_means, float* g_quats,
                 float* g_scales, float* g_view, cudaStream_t stream);

void sh_fwd(int degree, int64_t n, int K, const float* dirs, const float* coeffs, float* colors, cudaStream_t stream);
void sh_bwd(int degree, int64_t n, int K, const float* dirs, const float* coeffs, const float* g_colors,
            float* g_coeffs, float* g_dirs, cudaStream_t stream);

// Phase 1: pixel boxes, tile counts per Gaussian. Phase 2 (after an inclusive scan of the counts): 64-bit keys
// (tile << 32 | depth bits) and Gaussian ids for every pair, to be sorted stably by key.
void intersect_count(int64_t n, const float* means2d, const float* cov2d, const float* opac, const int32_t* radii,
                     int width, int height, int32_t* boxes, int32_t* radii_out, int64_t* counts, cudaStream_t stream);
void intersect_fill(int64_t n, const float* depths, const int32_t* boxes, const int64_t* cum_counts, int width,
                    int64_t* keys, int32_t* ids, cudaStream_t stream);

void raster_fwd(int width, int height, const float* means2d, const float* conics, const float* colors,
                const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets, float* rgb,
                float* alpha, float* dacc, int32_t* count, float* final_T, int32_t* last, cudaStream_t stream);
// g_out [n,10] zeroed: d means2d (2), d conic (3), d colour (3), d opacity, d depth
void raster_bwd(int width, int height, const float* means2d, const float* conics, const float* colors,
                const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets,
                const float* final_T, const int32_t* last, const float* g_rgb, const float* g_alpha,
                const float* g_dacc, float* g_out, cudaStream_t stream);

}  // namespace gs_cuda
