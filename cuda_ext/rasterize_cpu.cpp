// Compositing stage (CPU): front-to-back alpha blending per 16x16 tile, OpenMP over tiles.
//
// Per tile the Gaussians are walked in depth order (outer loop); each one only touches the 8-pixel row
// segments of its own alpha >= 1/255 box inside the tile, so a small Gaussian costs a few vectors, not 256
// pixels. The pixel math runs on 8-wide vectors (GCC vector extensions, branch-free with masks, gs::fast_exp
// instead of libm); exp is skipped for segments where the quadratic form alone proves alpha < 1/255.
// The tile functions are compiled twice (target_clones: an x86-64-v3 = AVX2+FMA clone and a baseline clone), the one
// the CPU supports is picked at load time, so no -march flag is needed. Per-Gaussian data is first packed into one
// 64-byte record (one cache line per Gaussian instead of six scattered loads).
// A pixel stops when the next Gaussian would bring its transmittance below 1e-4; a tile stops when all its
// pixels stopped. The backward walks the same lists back to front, recovering T by division, and sums each
// Gaussian's gradients per (tile, Gaussian) pair in registers, then into a per-thread buffer (no races),
// reduced at the end (atomics instead when per-thread buffers would be too large).
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "cpu_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GS_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define GS_CLONES
#endif

#define GS_VI inline __attribute__((always_inline))

namespace gs_cpu {

namespace {
constexpr int TS = gs::TILE;
constexpr int TP = TS * TS;
constexpr int VW = 8;
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

GS_VI v8f vsplat(float x) { return v8f{x, x, x, x, x, x, x, x}; }
GS_VI v8i isplat(int32_t x) { return v8i{x, x, x, x, x, x, x, x}; }
GS_VI v8f vld(const float* p) { return *reinterpret_cast<const v8f*>(p); }
GS_VI v8i ild(const int32_t* p) { return *reinterpret_cast<const v8i*>(p); }
GS_VI void vst(float* p, v8f v) { *reinterpret_cast<v8f*>(p) = v; }
GS_VI void ist(int32_t* p, v8i v) { *reinterpret_cast<v8i*>(p) = v; }
GS_VI bool vany(v8i m) {
  int32_t r = 0;
  for (int i = 0; i < VW; ++i) r |= m[i];
  return r != 0;
}
GS_VI float vsum(v8f v) {
  float s = 0.f;
  for (int i = 0; i < VW; ++i) s += v[i];
  return s;
}
GS_VI v8f vmin(v8f a, v8f b) { return a < b ? a : b; }
GS_VI v8f vmax(v8f a, v8f b) { return a > b ? a : b; }
GS_VI v8f vsel(v8i m, v8f a, v8f b) { return m ? a : b; }

// vector twin of gs::fast_exp (same operations, same results lane by lane up to FMA contraction)
GS_VI v8f vexp(v8f x) {
  x = vmax(vmin(x, vsplat(0.f)), vsplat(-87.f));
  const v8f y = x * 1.44269504088896341f;
  const v8i ni = __builtin_convertvector(y - 0.5f, v8i);
  const v8f nf = __builtin_convertvector(ni, v8f);
  const v8f r = (x - nf * 0.693359375f) - nf * (-2.12194440e-4f);
  v8f p = vsplat(1.f / 720.f);
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const v8i bits = (ni + 127) << 23;
  return p * reinterpret_cast<const v8f&>(bits);
}

const v8f LANE = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f, 7.5f};

struct alignas(64) Packed {
  float mx, my, ca, cb, cc, o, pfloor, c0, c1, c2, z;
  int32_t x0, y0, x1, y1, pad;
};

struct Inputs {
  int width, height, tw;
  const Packed* pk;
  const int32_t *gids, *offsets;
};

std::vector<Packed> pack(int64_t n, const float* means2d, const float* conics, const float* colors,
                         const float* opac, const float* depths, const int32_t* boxes) {
  std::vector<Packed> pk(n);
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t g = 0; g < n; ++g) {
    Packed& p = pk[g];
    p.mx = means2d[2 * g]; p.my = means2d[2 * g + 1];
    p.ca = conics[3 * g]; p.cb = conics[3 * g + 1]; p.cc = conics[3 * g + 2];
    p.o = opac[g]; p.pfloor = gs::power_floor(opac[g]);
    p.c0 = colors[3 * g]; p.c1 = colors[3 * g + 1]; p.c2 = colors[3 * g + 2]; p.z = depths[g];
    p.x0 = boxes[4 * g]; p.y0 = boxes[4 * g + 1]; p.x1 = boxes[4 * g + 2]; p.y1 = boxes[4 * g + 3];
    p.pad = 0;
  }
  return pk;
}

GS_CLONES void fwd_tile(const Inputs& in, int t, float* rgb, float* alpha, float* dacc, int32_t* count,
                        float* final_T, int32_t* last) {
  const int x0 = (t % in.tw) * TS, y0 = (t / in.tw) * TS;
  const int x1 = std::min(x0 + TS, in.width), y1 = std::min(y0 + TS, in.height);
  const int npix = (x1 - x0) * (y1 - y0);
  alignas(32) float T[TP], cr[TP], cg[TP], cb[TP], dp[TP], live[TP];
  alignas(32) int32_t cnt[TP], lst[TP];
  for (int k = 0; k < TP; ++k) {
    const int px = x0 + k % TS, py = y0 + k / TS;
    T[k] = 1.f; cr[k] = cg[k] = cb[k] = dp[k] = 0.f; cnt[k] = 0; lst[k] = 0;
    live[k] = (px < x1 && py < y1) ? 1.f : 0.f;
  }
  int ndone = 0;
  const int s = in.offsets[t], e = in.offsets[t + 1];
  constexpr int PF = 8;  // prefetch distance (records are scattered in memory: one cache miss each)
  for (int j = s; j < e && ndone < npix; ++j) {
    if (j + PF < e) __builtin_prefetch(in.pk + in.gids[j + PF]);
    const int g = in.gids[j];
    const Packed& P = in.pk[g];
    const int rx0 = std::max(P.x0, x0), rx1 = std::min(P.x1, x1);
    const int ry0 = std::max(P.y0, y0), ry1 = std::min(P.y1, y1);
    const float mx = P.mx, my = P.my, ca = P.ca, cbb = P.cb, cc = P.cc, o = P.o, pfloor = P.pfloor;
    const float c0 = P.c0, c1 = P.c1, c2 = P.c2, z = P.z;
    const int q0 = ((rx0 - x0) / VW) * VW, q1 = rx1 - x0;
    const v8i jl = isplat(j - s + 1);
    v8i stopped = isplat(0);
    for (int py = ry0; py < ry1; ++py) {
      const float dy = my - ((float)py + 0.5f);
      const float cdy = cc * dy * dy;
      for (int q = q0; q < q1; q += VW) {
        const int k = (py - y0) * TS + q;
        const v8f lv = vld(live + k);
        const v8f dx = mx - ((float)(x0 + q) + LANE);
        const v8f power = -0.5f * (ca * dx * dx + cdy) - cbb * dx * dy;
        const v8i cand = (lv > 0.f) & (power <= 0.f) & (power >= pfloor);
        if (!vany(cand)) continue;
        const v8f a = vmin(vsplat(gs::ALPHA_MAX), o * vexp(power));
        const v8i ok = cand & (a >= gs::ALPHA_MIN);
        const v8f Tk = vld(T + k);
        const v8f nT = Tk * (1.f - a);
        const v8i stop = ok & (nT < gs::T_MIN);
        const v8i use = ok & ~stop;
        const v8f w = vsel(use, a * Tk, vsplat(0.f));
        vst(cr + k, vld(cr + k) + w * c0);
        vst(cg + k, vld(cg + k) + w * c1);
        vst(cb + k, vld(cb + k) + w * c2);
        vst(dp + k, vld(dp + k) + w * z);
        vst(T + k, vsel(use, nT, Tk));
        ist(cnt + k, ild(cnt + k) - use);
        ist(lst + k, use ? jl : ild(lst + k));
        vst(live + k, vsel(stop, vsplat(0.f), lv));
        stopped -= stop;
      }
    }
    for (int i = 0; i < VW; ++i) ndone += stopped[i];
  }
  for (int py = y0; py < y1; ++py)
    for (int px = x0; px < x1; ++px) {
      const int k = (py - y0) * TS + (px - x0);
      const int64_t p = (int64_t)py * in.width + px;
      rgb[3 * p] = cr[k]; rgb[3 * p + 1] = cg[k]; rgb[3 * p + 2] = cb[k];
      alpha[p] = 1.f - T[k];
      dacc[p] = dp[k];
      count[p] = cnt[k];
      final_T[p] = T[k];
      last[p] = lst[k];
    }
}

constexpr int NG = 10;  // per-Gaussian gradient values: m2d(2) conic(3) color(3) opacity depth

GS_CLONES void bwd_tile(const Inputs& in, int t, const float* final_T, const int32_t* last, const float* g_rgb,
                        const float* g_alpha, const float* g_dacc, float* mine, bool use_atomic) {
  const int x0 = (t % in.tw) * TS, y0 = (t / in.tw) * TS;
  const int x1 = std::min(x0 + TS, in.width), y1 = std::min(y0 + TS, in.height);
  alignas(32) float Tp[TP], fT[TP], ar[TP], ag[TP], ab[TP], ad[TP], gr[TP], gg[TP], gb[TP], ga[TP], gd[TP];
  alignas(32) int32_t lst[TP];
  int maxlast = 0;
  for (int k = 0; k < TP; ++k) {
    lst[k] = 0; Tp[k] = fT[k] = 1.f;
    ar[k] = ag[k] = ab[k] = ad[k] = gr[k] = gg[k] = gb[k] = ga[k] = gd[k] = 0.f;
  }
  for (int py = y0; py < y1; ++py)
    for (int px = x0; px < x1; ++px) {
      const int k = (py - y0) * TS + (px - x0);
      const int64_t p = (int64_t)py * in.width + px;
      Tp[k] = fT[k] = final_T[p];
      gr[k] = g_rgb[3 * p]; gg[k] = g_rgb[3 * p + 1]; gb[k] = g_rgb[3 * p + 2];
      ga[k] = g_alpha[p]; gd[k] = g_dacc[p];
      lst[k] = last[p];
      maxlast = std::max(maxlast, lst[k]);
    }
  const int s = in.offsets[t];
  const v8f zero = vsplat(0.f);
  constexpr int PF = 8;
  for (int jj = maxlast - 1; jj >= 0; --jj) {
    if (jj >= PF) {
      const int ga_ = in.gids[s + jj - PF];
      __builtin_prefetch(in.pk + ga_);
      __builtin_prefetch(mine + (size_t)ga_ * NG, 1);
      __builtin_prefetch(mine + (size_t)ga_ * NG + NG - 1, 1);
    }
    const int g = in.gids[s + jj];
    const Packed& P = in.pk[g];
    const int rx0 = std::max(P.x0, x0), rx1 = std::min(P.x1, x1);
    const int ry0 = std::max(P.y0, y0), ry1 = std::min(P.y1, y1);
    const float mx = P.mx, my = P.my, ca = P.ca, cbb = P.cb, cc = P.cc, o = P.o, pfloor = P.pfloor;
    const float c0 = P.c0, c1 = P.c1, c2 = P.c2, z = P.z;
    const int q0 = ((rx0 - x0) / VW) * VW, q1 = rx1 - x0;
    const v8i jv = isplat(jj);
    v8f s_mx = zero, s_my = zero, s_a = zero, s_b = zero, s_c = zero, s_c0 = zero, s_c1 = zero, s_c2 = zero,
        s_o = zero, s_z = zero;
    bool any = false;
    for (int py = ry0; py < ry1; ++py) {
      const float dy = my - ((float)py + 0.5f);
      const float cdy = cc * dy * dy;
      for (int q = q0; q < q1; q += VW) {
        const int k = (py - y0) * TS + q;
        const v8f dx = mx - ((float)(x0 + q) + LANE);
        const v8f power = -0.5f * (ca * dx * dx + cdy) - cbb * dx * dy;
        const v8i cand = (jv < ild(lst + k)) & (power <= 0.f) & (power >= pfloor);
        if (!vany(cand)) continue;
        const v8f G = vexp(power);
        const v8f araw = o * G;
        const v8f a = vmin(vsplat(gs::ALPHA_MAX), araw);
        const v8i ok = cand & (a >= gs::ALPHA_MIN);
        if (!vany(ok)) continue;
        any = true;
        const v8f om = 1.f - a;
        const v8f Tpk = vld(Tp + k);
        const v8f T = Tpk / om;
        const v8f w = vsel(ok, a * T, zero);
        const v8f vgr = vld(gr + k), vgg = vld(gg + k), vgb = vld(gb + k), vgd = vld(gd + k);
        s_c0 += w * vgr; s_c1 += w * vgg; s_c2 += w * vgb;
        s_z += w * vgd;
        const v8f var = vld(ar + k), vag = vld(ag + k), vab = vld(ab + k), vad = vld(ad + k);
        const v8f dLda = T * ((c0 - var) * vgr + (c1 - vag) * vgg + (c2 - vab) * vgb + (z - vad) * vgd) +
                         vld(ga + k) * vld(fT + k) / om;
        vst(ar + k, vsel(ok, a * c0 + om * var, var));
        vst(ag + k, vsel(ok, a * c1 + om * vag, vag));
        vst(ab + k, vsel(ok, a * c2 + om * vab, vab));
        vst(ad + k, vsel(ok, a * z + om * vad, vad));
        vst(Tp + k, vsel(ok, T, Tpk));
        const v8f gl = vsel(ok & (araw <= gs::ALPHA_MAX), dLda, zero);
        s_o += G * gl;
        const v8f gp = araw * gl;
        s_mx -= gp * (ca * dx + cbb * dy);
        s_my -= gp * (cbb * dx + cc * dy);
        s_a -= 0.5f * gp * dx * dx;
        s_b -= gp * dx * dy;
        s_c -= 0.5f * gp * dy * dy;
      }
    }
    if (any) {
      float* qd = mine + (size_t)g * NG;
      const float v[NG] = {vsum(s_mx), vsum(s_my), vsum(s_a), vsum(s_b), vsum(s_c),
                           vsum(s_c0), vsum(s_c1), vsum(s_c2), vsum(s_o), vsum(s_z)};
      if (use_atomic) {
        for (int c = 0; c < NG; ++c) {
#pragma omp atomic
          qd[c] += v[c];
        }
      } else {
        for (int c = 0; c < NG; ++c) qd[c] += v[c];
      }
    }
  }
}
}  // namespace

void raster_fwd(int width, int height, const float* means2d, const float* conics, const float* colors,
                const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets,
                const int32_t* boxes, float* rgb, float* alpha, float* dacc, int32_t* count, float* final_T,
                int32_t* last) {
  const int tw = (width + TS - 1) / TS, th = (height + TS - 1) / TS;
  const int64_t n = offsets[tw * th] > 0 ? 1 + *std::max_element(gids, gids + offsets[tw * th]) : 0;
  const std::vector<Packed> pk = pack(n, means2d, conics, colors, opac, depths, boxes);
  const Inputs in{width, height, tw, pk.data(), gids, offsets};
#pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < tw * th; ++t) fwd_tile(in, t, rgb, alpha, dacc, count, final_T, last);
}

void raster_bwd(int width, int height, int64_t n, const float* means2d, const float* conics, const float* colors,
                const float* opac, const float* depths, const int32_t* gids, const int32_t* offsets,
                const int32_t* boxes, const float* final_T, const int32_t* last, const float* g_rgb,
                const float* g_alpha, const float* g_dacc, float* g_out) {
  const int tw = (width + TS - 1) / TS, th = (height + TS - 1) / TS;
  const std::vector<Packed> pk = pack(n, means2d, conics, colors, opac, depths, boxes);
  const Inputs in{width, height, tw, pk.data(), gids, offsets};
  const int nt = omp_get_max_threads();
  // Per-thread gradient buffers while they stay small; beyond that, atomics (one per pair and value).
  // (SPATIALVID_RASTER_ATOMIC=1 forces the atomic path; the tests use it to cover both.)
  const bool use_atomic = nt > 1 && ((size_t)nt * (size_t)n * NG > ((size_t)64 << 20) ||
                                     std::getenv("SPATIALVID_RASTER_ATOMIC") != nullptr);
  const bool direct = use_atomic || nt == 1;
  std::vector<float> buf(direct ? 0 : (size_t)nt * (size_t)n * NG, 0.f);
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
    float* mine = direct ? g_out : buf.data() + (size_t)tid * (size_t)n * NG;
    // static round-robin: the tile -> thread assignment, hence each per-thread sum, is the same every call,
    // so gradients are bit-reproducible for a given thread count (a resumed run retraces the original)
#pragma omp for schedule(static, 1)
    for (int t = 0; t < tw * th; ++t) bwd_tile(in, t, final_T, last, g_rgb, g_alpha, g_dacc, mine, use_atomic);
    // reduction over threads (implicit barrier after the omp for above)
    if (!direct) {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n * NG; ++i) {
        float v = 0.f;
        for (int tt = 0; tt < nt; ++tt) v += buf[(size_t)tt * (size_t)n * NG + (size_t)i];
        g_out[i] = v;
      }
    }
  }
}

}  // namespace gs_cpu
