// Compositing stage (CUDA): one 16x16 thread block per tile, one thread per pixel; Gaussians are staged in
// shared memory in batches of 256 (front to back). Same per-pixel rules as the CPU kernels (gs_math.h):
// alpha = min(0.99, o exp(power)), skip alpha < 1/255, stop before T < 1e-4.
// Backward: back to front from each tile's last contributor, T recovered by division; per-Gaussian gradients
// are reduced across the warp (shuffles) and added with one atomicAdd per warp and value.
#include "cuda_kernels.h"

namespace gs_cuda {
namespace {

constexpr int TS = gs::TILE;
constexpr int BS = TS * TS;

__global__ void raster_fwd_k(int W, int H, int tw, const float* means2d, const float* conics, const float* colors,
                             const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets,
                             float* rgb, float* alpha, float* dacc, int32_t* count, float* final_T,
                             int32_t* last) {
  const int tile = blockIdx.x;
  const int px = (tile % tw) * TS + threadIdx.x, py = (tile / tw) * TS + threadIdx.y;
  const int rank = threadIdx.y * TS + threadIdx.x;
  const bool inside = px < W && py < H;
  bool done = !inside;
  const int s = offsets[tile], e = offsets[tile + 1];
  __shared__ float4 sh_a[BS];  // mx, my, o, pfloor
  __shared__ float4 sh_b[BS];  // ca, cb, cc, z
  __shared__ float sh_c[BS * 3];
  float T = 1.f, cr = 0.f, cg = 0.f, cb = 0.f, dp = 0.f;
  int cnt = 0, lst = 0;
  const float pcx = (float)px + 0.5f, pcy = (float)py + 0.5f;
  for (int base = s; base < e; base += BS) {
    if (__syncthreads_count(done) == BS) break;
    const int idx = base + rank;
    if (idx < e) {
      const int g = gids[idx];
      const float o = opac[g];
      sh_a[rank] = make_float4(means2d[2 * g], means2d[2 * g + 1], o, gs::power_floor(o));
      sh_b[rank] = make_float4(conics[3 * g], conics[3 * g + 1], conics[3 * g + 2], depths[g]);
      sh_c[3 * rank] = colors[3 * g]; sh_c[3 * rank + 1] = colors[3 * g + 1]; sh_c[3 * rank + 2] = colors[3 * g + 2];
    }
    __syncthreads();
    const int nb = min(BS, e - base);
    for (int j = 0; j < nb && !done; ++j) {
      const float4 A = sh_a[j], Bq = sh_b[j];
      float dx, dy;
      const float power = gs::gauss_power(A.x, A.y, Bq.x, Bq.y, Bq.z, pcx, pcy, &dx, &dy);
      if (power > 0.f || power < A.w) continue;
      const float a = fminf(gs::ALPHA_MAX, A.z * __expf(power));
      if (a < gs::ALPHA_MIN) continue;
      const float nT = T * (1.f - a);
      if (nT < gs::T_MIN) {
        done = true;
        break;
      }
      const float w = a * T;
      cr += w * sh_c[3 * j]; cg += w * sh_c[3 * j + 1]; cb += w * sh_c[3 * j + 2]; dp += w * Bq.w;
      T = nT;
      ++cnt;
      lst = base + j - s + 1;
    }
  }
  if (inside) {
    const int64_t p = (int64_t)py * W + px;
    rgb[3 * p] = cr; rgb[3 * p + 1] = cg; rgb[3 * p + 2] = cb;
    alpha[p] = 1.f - T;
    dacc[p] = dp;
    count[p] = cnt;
    final_T[p] = T;
    last[p] = lst;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

__global__ void raster_bwd_k(int W, int H, int tw, const float* means2d, const float* conics, const float* colors,
                             const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets,
                             const float* final_T, const int32_t* last, const float* g_rgb, const float* g_alpha,
                             const float* g_dacc, float* g_out) {
  const int tile = blockIdx.x;
  const int px = (tile % tw) * TS + threadIdx.x, py = (tile / tw) * TS + threadIdx.y;
  const int rank = threadIdx.y * TS + threadIdx.x;
  const bool inside = px < W && py < H;
  const int s = offsets[tile];
  __shared__ float4 sh_a[BS];
  __shared__ float4 sh_b[BS];
  __shared__ float sh_c[BS * 3];
  __shared__ int32_t sh_g[BS];
  __shared__ int maxlast;
  if (rank == 0) maxlast = 0;
  __syncthreads();
  const int64_t p = (int64_t)py * W + px;
  float Tp = 1.f, fT = 1.f, gr = 0.f, gg = 0.f, gb = 0.f, ga = 0.f, gd = 0.f;
  int lst = 0;
  if (inside) {
    Tp = fT = final_T[p];
    gr = g_rgb[3 * p]; gg = g_rgb[3 * p + 1]; gb = g_rgb[3 * p + 2];
    ga = g_alpha[p]; gd = g_dacc[p];
    lst = last[p];
    atomicMax(&maxlast, lst);
  }
  __syncthreads();
  float ar = 0.f, ag = 0.f, ab = 0.f, ad = 0.f;
  const float pcx = (float)px + 0.5f, pcy = (float)py + 0.5f;
  const int lane = rank & 31;
  for (int end = maxlast; end > 0; end -= BS) {
    const int start = max(0, end - BS);
    __syncthreads();
    const int jj = end - 1 - rank;  // batch slot rank holds list position end-1-rank (back to front)
    if (jj >= start) {
      const int g = gids[s + jj];
      const float o = opac[g];
      sh_g[rank] = g;
      sh_a[rank] = make_float4(means2d[2 * g], means2d[2 * g + 1], o, gs::power_floor(o));
      sh_b[rank] = make_float4(conics[3 * g], conics[3 * g + 1], conics[3 * g + 2], depths[g]);
      sh_c[3 * rank] = colors[3 * g]; sh_c[3 * rank + 1] = colors[3 * g + 1]; sh_c[3 * rank + 2] = colors[3 * g + 2];
    }
    __syncthreads();
    const int nb = end - start;
    for (int j = 0; j < nb; ++j) {
      const int pos = end - 1 - j;
      const float4 A = sh_a[j], Bq = sh_b[j];
      const float c0 = sh_c[3 * j], c1 = sh_c[3 * j + 1], c2 = sh_c[3 * j + 2];
      float v[10] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      bool ok = inside && pos < lst;
      float dx = 0.f, dy = 0.f, power = 0.f, G = 0.f, araw = 0.f, a = 0.f;
      if (ok) {
        power = gs::gauss_power(A.x, A.y, Bq.x, Bq.y, Bq.z, pcx, pcy, &dx, &dy);
        ok = !(power > 0.f || power < A.w);
        if (ok) {
          G = __expf(power);
          araw = A.z * G;
          a = fminf(gs::ALPHA_MAX, araw);
          ok = a >= gs::ALPHA_MIN;
        }
      }
      if (ok) {
        const float om = 1.f - a;
        const float T = Tp / om;
        const float w = a * T;
        v[5] = w * gr; v[6] = w * gg; v[7] = w * gb; v[9] = w * gd;
        const float dLda = T * ((c0 - ar) * gr + (c1 - ag) * gg + (c2 - ab) * gb + (Bq.w - ad) * gd) + ga * fT / om;
        ar = a * c0 + om * ar; ag = a * c1 + om * ag; ab = a * c2 + om * ab; ad = a * Bq.w + om * ad;
        Tp = T;
        if (araw <= gs::ALPHA_MAX) {
          v[8] = G * dLda;
          const float gp = araw * dLda;
          v[0] = -gp * (Bq.x * dx + Bq.y * dy);
          v[1] = -gp * (Bq.y * dx + Bq.z * dy);
          v[2] = -0.5f * gp * dx * dx;
          v[3] = -gp * dx * dy;
          v[4] = -0.5f * gp * dy * dy;
        }
      }
      if (__any_sync(0xffffffffu, ok)) {
        float* q = g_out + (int64_t)sh_g[j] * 10;
        for (int c = 0; c < 10; ++c) {
          const float sum = warp_sum(v[c]);
          if (lane == 0 && sum != 0.f) atomicAdd(q + c, sum);
        }
      }
    }
  }
}

}  // namespace

void raster_fwd(int width, int height, const float* means2d, const float* conics, const float* colors,
                const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets, float* rgb,
                float* alpha, float* dacc, int32_t* count, float* final_T, int32_t* last, cudaStream_t stream) {
  const int tw = (width + TS - 1) / TS, th = (height + TS - 1) / TS;
  raster_fwd_k<<<tw * th, dim3(TS, TS), 0, stream>>>(width, height, tw, means2d, conics, colors, opac, depths, gids, offsets,
                                          rgb, alpha, dacc, count, final_T, last);
  check_launch("raster_fwd");
}

void raster_bwd(int width, int height, const float* means2d, const float* conics, const float* colors,
                const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets,
                const float* final_T, const int32_t* last, const float* g_rgb, const float* g_alpha,
                const float* g_dacc, float* g_out, cudaStream_t stream) {
  const int tw = (width + TS - 1) / TS, th = (height + TS - 1) / TS;
  raster_bwd_k<<<tw * th, dim3(TS, TS), 0, stream>>>(width, height, tw, means2d, conics, colors, opac, depths, gids, offsets,
                                          final_T, last, g_rgb, g_alpha, g_dacc, g_out);
  check_launch("raster_bwd");
}

}  // namespace gs_cuda
