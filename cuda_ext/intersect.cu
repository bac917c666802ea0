// Tile intersection (CUDA): per-Gaussian pixel boxes and tile counts, then one (key, id) per pair with
// key = tile << 32 | depth bits (depth > 0, so the bits order like the value). The bindings scan the counts
// and sort the keys stably (ties stay in Gaussian-index order, as on the CPU).
#include "cuda_kernels.h"

namespace gs_cuda {
namespace {

__global__ void count_k(int64_t n, const float* means2d, const float* cov2d, const float* opac,
                        const int32_t* radii, int width, int height, int32_t* boxes, int32_t* radii_out,
                        int64_t* counts) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int32_t* b = boxes + 4 * i;
  bool ok = gs::pixel_box(means2d[2 * i], means2d[2 * i + 1], cov2d[3 * i], cov2d[3 * i + 2], opac[i], radii[i],
                          width, height, b);
  radii_out[i] = ok ? radii[i] : 0;
  const int T = gs::TILE;
  counts[i] = ok ? (int64_t)((b[2] + T - 1) / T - b[0] / T) * ((b[3] + T - 1) / T - b[1] / T) : 0;
}

__global__ void fill_k(int64_t n, const float* depths, const int32_t* boxes, const int64_t* cum, int width,
                       int64_t* keys, int32_t* ids) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int64_t start = i == 0 ? 0 : cum[i - 1];
  if (cum[i] == start) return;
  const int T = gs::TILE;
  const int tw = (width + T - 1) / T;
  const int32_t* b = boxes + 4 * i;
  const uint32_t dbits = __float_as_uint(depths[i]);
  int64_t k = start;
  for (int ty = b[1] / T; ty < (b[3] + T - 1) / T; ++ty)
    for (int tx = b[0] / T; tx < (b[2] + T - 1) / T; ++tx) {
      keys[k] = ((int64_t)(ty * tw + tx) << 32) | (int64_t)dbits;
      ids[k] = (int32_t)i;
      ++k;
    }
}

}  // namespace

void intersect_count(int64_t n, const float* means2d, const float* cov2d, const float* opac, const int32_t* radii,
                     int width, int height, int32_t* boxes, int32_t* radii_out, int64_t* counts, cudaStream_t stream) {
  if (n == 0) return;
  count_k<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(n, means2d, cov2d, opac, radii, width, height, boxes, radii_out,
                                                counts);
  check_launch("intersect_count");
}

void intersect_fill(int64_t n, const float* depths, const int32_t* boxes, const int64_t* cum_counts, int width,
                    int64_t* keys, int32_t* ids, cudaStream_t stream) {
  if (n == 0) return;
  fill_k<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(n, depths, boxes, cum_counts, width, keys, ids);
  check_launch("intersect_fill");
}

}  // namespace gs_cuda
