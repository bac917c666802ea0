// CPU kernels of the spatialvid rasterizer (raw pointers, float32, C-contiguous). OpenMP inside.
#pragma once
#include <cstdint>
#include <vector>

#include "gs_math.h"

namespace gs_cpu {

void project_fwd(const gs::ProjParams& P, int64_t n, const float* means, const float* quats, const float* scales,
                 float* means2d, float* conics, float* depths, int32_t* radii, float* comp, float* cov2d);

// gR (9) and gt (3) may be null (no viewmat gradient).
void project_bwd(const gs::ProjParams& P, int64_t n, const float* means, const float* quats, const float* scales,
                 const int32_t* radii, const float* g_m2d, const float* g_conic, const float* g_depth,
                 const float* g_comp, float* g_means, float* g_quats, float* g_scales, float* gR, float* gt);

void sh_fwd(int degree, int64_t n, int K, const float* dirs, const float* coeffs, float* colors);
void sh_bwd(int degree, int64_t n, int K, const float* dirs, const float* coeffs, const float* g_colors,
            float* g_coeffs, float* g_dirs);

// Fills boxes [n,4] and radii_out; returns sorted Gaussian ids per tile and tile offsets [ntiles+1], and the
// number of (tile, Gaussian) pairs, or minus that number (lists left empty) when it does not fit int32.
int64_t intersect(int64_t n, const float* means2d, const float* cov2d, const float* opac, const int32_t* radii,
               const float* depths, int width, int height, int32_t* boxes, int32_t* radii_out,
               std::vector<int32_t>& gids, std::vector<int32_t>& offsets);

void raster_fwd(int width, int height, const float* means2d, const float* conics, const float* colors,
                const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets,
                const int32_t* boxes, float* rgb, float* alpha, float* dacc, int32_t* count, float* final_T,
                int32_t* last);

void raster_bwd(int width, int height, int64_t n, const float* means2d, const float* conics, const float* colors,
                const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets,
                const int32_t* boxes, const float* final_T, const int32_t* last, const float* g_rgb,
                const float* g_alpha, const float* g_dacc, float* g_out);  // g_out [n,10] zeroed:
// per Gaussian (d means2d x, y, d conic a, b, c, d colour r, g, b, d opacity, d depth)

}  // namespace gs_cpu
