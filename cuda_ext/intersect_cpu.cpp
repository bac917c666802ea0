// Tile intersection and depth sort (CPU). Gaussians are sorted once by (depth, index); walking them in that
// order and appending to per-tile lists (count, prefix sum, fill) yields every tile list already depth-sorted,
// so no per-pair sort is needed: O(N log N + pairs).
#include <algorithm>
#include <limits>
#include <numeric>

#include "cpu_kernels.h"

namespace gs_cpu {

int64_t intersect(int64_t n, const float* means2d, const float* cov2d, const float* opac, const int32_t* radii,
               const float* depths, int width, int height, int32_t* boxes, int32_t* radii_out,
               std::vector<int32_t>& gids, std::vector<int32_t>& offsets) {
  const int T = gs::TILE;
  int tw = (width + T - 1) / T, th = (height + T - 1) / T, ntiles = tw * th;
  std::vector<uint8_t> ok(n);
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    int32_t* b = boxes + 4 * i;
    bool v = gs::pixel_box(means2d[2 * i], means2d[2 * i + 1], cov2d[3 * i], cov2d[3 * i + 2], opac[i], radii[i],
                           width, height, b);
    ok[i] = v;
    radii_out[i] = v ? radii[i] : 0;
  }
  // depth > near > 0, so the IEEE bit pattern orders like the value: sort (depth bits << 32 | index).
  std::vector<uint64_t> keys;
  keys.reserve(n);
  for (int64_t i = 0; i < n; ++i)
    if (ok[i]) {
      union {
        float f;
        uint32_t u;
      } d;
      d.f = depths[i];
      keys.push_back(((uint64_t)d.u << 32) | (uint64_t)(uint32_t)i);
    }
  int64_t total = 0;  // pairs, counted in 64 bits before the int32 lists are built
  for (int64_t i = 0; i < n; ++i)
    if (ok[i]) {
      const int32_t* b = boxes + 4 * i;
      total += (int64_t)((b[2] + T - 1) / T - b[0] / T) * ((b[3] + T - 1) / T - b[1] / T);
    }
  if (total > (int64_t)std::numeric_limits<int32_t>::max()) {
    offsets.assign(ntiles + 1, 0);
    gids.clear();
    return -total;
  }
  std::sort(keys.begin(), keys.end());
  std::vector<int32_t> order(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) order[i] = (int32_t)(keys[i] & 0xffffffffu);
  offsets.assign(ntiles + 1, 0);
  for (int32_t g : order) {
    const int32_t* b = boxes + 4 * g;
    int tx0 = b[0] / T, ty0 = b[1] / T, tx1 = (b[2] + T - 1) / T, ty1 = (b[3] + T - 1) / T;
    for (int ty = ty0; ty < ty1; ++ty)
      for (int tx = tx0; tx < tx1; ++tx) offsets[ty * tw + tx + 1]++;
  }
  for (int t = 0; t < ntiles; ++t) offsets[t + 1] += offsets[t];
  gids.resize(offsets[ntiles]);
  std::vector<int32_t> fill(offsets.begin(), offsets.end() - 1);
  for (int32_t g : order) {
    const int32_t* b = boxes + 4 * g;
    int tx0 = b[0] / T, ty0 = b[1] / T, tx1 = (b[2] + T - 1) / T, ty1 = (b[3] + T - 1) / T;
    for (int ty = ty0; ty < ty1; ++ty)
      for (int tx = tx0; tx < tx1; ++tx) gids[fill[ty * tw + tx]++] = g;
  }
  return total;
}

}  // namespace gs_cpu
