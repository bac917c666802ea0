// Shared math of the spatialvid Gaussian rasterizer: used by the C++ CPU kernels (*_cpu.cpp) and the CUDA
// kernels (*.cu), so the two backends cannot drift. Mirrors spatialvid/render/_torch_impl.py stage by stage.
//
// Conventions: OpenCV camera axes (x right, y down, z forward); viewmat is world-to-camera, row-major 4x4;
// pixel (px, py) has its centre at (px + 0.5, py + 0.5). Quaternions are (w, x, y, z), normalised here.
// conic = (a, b, c) of the inverse 2D covariance; power = -0.5 (a dx^2 + c dy^2) - b dx dy, d = mean - pixel.
#pragma once

#ifdef __CUDACC__
#define GS_HD __host__ __device__ __forceinline__
#else
#define GS_HD inline
#endif

#include <math.h>
#include <stdint.h>

namespace gs {

constexpr int TILE = 16;
constexpr float ALPHA_MIN = 1.0f / 255.0f;
constexpr float ALPHA_MAX = 0.99f;
constexpr float T_MIN = 1e-4f;
constexpr float BOX_MARGIN = 0.01f;  // px; the per-pixel alpha test stays decisive

constexpr float SH_C0 = 0.28209479177387814f;
constexpr float SH_C1 = 0.4886025119029199f;
constexpr float SH_C2_0 = 1.0925484305920792f, SH_C2_1 = -1.0925484305920792f, SH_C2_2 = 0.31539156525252005f,
                SH_C2_3 = -1.0925484305920792f, SH_C2_4 = 0.5462742152960396f;
constexpr float SH_C3_0 = -0.5900435899266435f, SH_C3_1 = 2.890611442640554f, SH_C3_2 = -0.4570457994644658f,
                SH_C3_3 = 0.3731763325901154f, SH_C3_4 = -0.4570457994644658f, SH_C3_5 = 1.445305721320277f,
                SH_C3_6 = -0.5900435899266435f;

struct Mat3 {
  float m[3][3];
};

GS_HD float gs_min(float a, float b) { return a < b ? a : b; }
GS_HD float gs_max(float a, float b) { return a > b ? a : b; }

// ---- quaternion -> rotation and its vector-Jacobian product ------------------------------------------
GS_HD void quat_normalize(const float* q, float* qn, float* inv_norm) {
  float n = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  float inv = 1.0f / gs_max(n, 1e-12f);
  *inv_norm = inv;
  for (int i = 0; i < 4; ++i) qn[i] = q[i] * inv;
}

GS_HD Mat3 quat_to_rot(const float* q) {  // q normalised (w, x, y, z)
  float w = q[0], x = q[1], y = q[2], z = q[3];
  Mat3 r;
  r.m[0][0] = 1.f - 2.f * (y * y + z * z); r.m[0][1] = 2.f * (x * y - w * z); r.m[0][2] = 2.f * (x * z + w * y);
  r.m[1][0] = 2.f * (x * y + w * z); r.m[1][1] = 1.f - 2.f * (x * x + z * z); r.m[1][2] = 2.f * (y * z - w * x);
  r.m[2][0] = 2.f * (x * z - w * y); r.m[2][1] = 2.f * (y * z + w * x); r.m[2][2] = 1.f - 2.f * (x * x + y * y);
  return r;
}

// gradient of quat_to_rot w.r.t. the normalised quaternion, then through the normalisation.
GS_HD void quat_to_rot_vjp(const float* qn, float inv_norm, const Mat3& g, float* gq) {
  float w = qn[0], x = qn[1], y = qn[2], z = qn[3];
  const float(*G)[3] = g.m;
  float gw = 2.f * (-z * G[0][1] + y * G[0][2] + z * G[1][0] - x * G[1][2] - y * G[2][0] + x * G[2][1]);
  float gx = 2.f * (y * G[0][1] + z * G[0][2] + y * G[1][0] - 2.f * x * G[1][1] - w * G[1][2] + z * G[2][0] +
                    w * G[2][1] - 2.f * x * G[2][2]);
  float gy = 2.f * (-2.f * y * G[0][0] + x * G[0][1] + w * G[0][2] + x * G[1][0] + z * G[1][2] - w * G[2][0] +
                    z * G[2][1] - 2.f * y * G[2][2]);
  float gz = 2.f * (-2.f * z * G[0][0] - w * G[0][1] + x * G[0][2] + w * G[1][0] - 2.f * z * G[1][1] +
                    y * G[1][2] + x * G[2][0] + y * G[2][1]);
  float dot = gw * w + gx * x + gy * y + gz * z;
  gq[0] = (gw - w * dot) * inv_norm;
  gq[1] = (gx - x * dot) * inv_norm;
  gq[2] = (gy - y * dot) * inv_norm;
  gq[3] = (gz - z * dot) * inv_norm;
}

// ---- projection ---------------------------------------------------------------------------------------
struct ProjParams {
  float R[9];  // world-to-camera rotation, row-major
  float t[3];
  float fx, fy, cx, cy;
  int width, height;
  float near_plane, far_plane, eps2d;
  int antialiased;
};

struct ProjOut {
  float mx, my;            // means2d
  float ca, cb, cc;        // conic
  float depth;             // camera z
  float comp;              // antialiasing opacity compensation
  float sa, sb, sc;        // blurred 2D covariance
  int radius;              // 0 = culled
};

// Everything the backward needs is recomputed from the inputs (cheap), so nothing is stored per Gaussian.
GS_HD ProjOut project_one(const ProjParams& P, const float* mean, const float* quat, const float* scale) {
  ProjOut o;
  const float* R = P.R;
  float x = R[0] * mean[0] + R[1] * mean[1] + R[2] * mean[2] + P.t[0];
  float y = R[3] * mean[0] + R[4] * mean[1] + R[5] * mean[2] + P.t[1];
  float z = R[6] * mean[0] + R[7] * mean[1] + R[8] * mean[2] + P.t[2];
  o.depth = z;
  o.radius = 0;
  o.mx = o.my = o.ca = o.cb = o.cc = o.sa = o.sb = o.sc = 0.f;
  o.comp = 1.f;
  if (!(z > P.near_plane && z < P.far_plane)) return o;
  float qn[4], inv;
  quat_normalize(quat, qn, &inv);
  Mat3 rq = quat_to_rot(qn);
  float M[3][3], S[3][3], C[3][3], T1[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) M[i][j] = rq.m[i][j] * scale[j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) S[i][j] = M[i][0] * M[j][0] + M[i][1] * M[j][1] + M[i][2] * M[j][2];
  // C = R S R^T
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) T1[i][j] = R[i * 3 + 0] * S[0][j] + R[i * 3 + 1] * S[1][j] + R[i * 3 + 2] * S[2][j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) C[i][j] = T1[i][0] * R[j * 3 + 0] + T1[i][1] * R[j * 3 + 1] + T1[i][2] * R[j * 3 + 2];
  float lxp = (P.width - P.cx) / P.fx + 0.3f * P.width / P.fx;
  float lxn = P.cx / P.fx + 0.3f * P.width / P.fx;
  float lyp = (P.height - P.cy) / P.fy + 0.3f * P.height / P.fy;
  float lyn = P.cy / P.fy + 0.3f * P.height / P.fy;
  float tx = z * gs_min(gs_max(x / z, -lxn), lxp);
  float ty = z * gs_min(gs_max(y / z, -lyn), lyp);
  float j00 = P.fx / z, j02 = -P.fx * tx / (z * z), j11 = P.fy / z, j12 = -P.fy * ty / (z * z);
  // cov2 = J C J^T with J = [[j00, 0, j02], [0, j11, j12]]
  float r0[3] = {j00 * C[0][0] + j02 * C[2][0], j00 * C[0][1] + j02 * C[2][1], j00 * C[0][2] + j02 * C[2][2]};
  float r1[3] = {j11 * C[1][0] + j12 * C[2][0], j11 * C[1][1] + j12 * C[2][1], j11 * C[1][2] + j12 * C[2][2]};
  float a0 = r0[0] * j00 + r0[2] * j02;
  float b = r0[1] * j11 + r0[2] * j12;
  float c0 = r1[1] * j11 + r1[2] * j12;
  float det0 = a0 * c0 - b * b;
  float a = a0 + P.eps2d, c = c0 + P.eps2d;
  float det = a * c - b * b;
  if (!(det > 0.f)) return o;
  o.comp = P.antialiased ? sqrtf(gs_max(det0 / det, 0.f)) : 1.f;
  o.ca = c / det;
  o.cb = -b / det;
  o.cc = a / det;
  o.mx = P.fx * x / z + P.cx;
  o.my = P.fy * y / z + P.cy;
  o.sa = a; o.sb = b; o.sc = c;
  float mid = 0.5f * (a + c);
  float lam = mid + sqrtf(gs_max(mid * mid - det, 0.1f));
  o.radius = (int)ceilf(3.f * sqrtf(lam));
  return o;
}

// Backward of project_one for a non-culled Gaussian. Inputs: gradients of means2d, conic, depth, comp.
// Outputs: gradients of mean, quat, scale; accumulates the viewmat rotation/translation gradient into gR, gt
// when they are non-null.
GS_HD void project_one_vjp(const ProjParams& P, const float* mean, const float* quat, const float* scale,
                           const float* g_m2d, const float* g_conic, float g_depth, float g_comp,
                           float* g_mean, float* g_quat, float* g_scale, float* gR, float* gt) {
  const float* R = P.R;
  float x = R[0] * mean[0] + R[1] * mean[1] + R[2] * mean[2] + P.t[0];
  float y = R[3] * mean[0] + R[4] * mean[1] + R[5] * mean[2] + P.t[1];
  float z = R[6] * mean[0] + R[7] * mean[1] + R[8] * mean[2] + P.t[2];
  float qn[4], inv;
  quat_normalize(quat, qn, &inv);
  Mat3 rq = quat_to_rot(qn);
  float M[3][3], S[3][3], C[3][3], T1[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) M[i][j] = rq.m[i][j] * scale[j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) S[i][j] = M[i][0] * M[j][0] + M[i][1] * M[j][1] + M[i][2] * M[j][2];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) T1[i][j] = R[i * 3 + 0] * S[0][j] + R[i * 3 + 1] * S[1][j] + R[i * 3 + 2] * S[2][j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) C[i][j] = T1[i][0] * R[j * 3 + 0] + T1[i][1] * R[j * 3 + 1] + T1[i][2] * R[j * 3 + 2];
  float lxp = (P.width - P.cx) / P.fx + 0.3f * P.width / P.fx;
  float lxn = P.cx / P.fx + 0.3f * P.width / P.fx;
  float lyp = (P.height - P.cy) / P.fy + 0.3f * P.height / P.fy;
  float lyn = P.cy / P.fy + 0.3f * P.height / P.fy;
  float ux = x / z, uy = y / z;
  bool clx = ux < -lxn || ux > lxp, cly = uy < -lyn || uy > lyp;
  float tx = z * gs_min(gs_max(ux, -lxn), lxp);
  float ty = z * gs_min(gs_max(uy, -lyn), lyp);
  float j00 = P.fx / z, j02 = -P.fx * tx / (z * z), j11 = P.fy / z, j12 = -P.fy * ty / (z * z);
  float r0[3] = {j00 * C[0][0] + j02 * C[2][0], j00 * C[0][1] + j02 * C[2][1], j00 * C[0][2] + j02 * C[2][2]};
  float r1[3] = {j11 * C[1][0] + j12 * C[2][0], j11 * C[1][1] + j12 * C[2][1], j11 * C[1][2] + j12 * C[2][2]};
  float a0 = r0[0] * j00 + r0[2] * j02;
  float b = r0[1] * j11 + r0[2] * j12;
  float c0 = r1[1] * j11 + r1[2] * j12;
  float det0 = a0 * c0 - b * b;
  float a = a0 + P.eps2d, c = c0 + P.eps2d;
  float det = a * c - b * b;

  // conic = (c, -b, a) / det
  float id = 1.f / det;
  float ga = g_conic[2] * id, gb = -g_conic[1] * id, gc = g_conic[0] * id;
  float gdet = -(g_conic[0] * c - g_conic[1] * b + g_conic[2] * a) * id * id;
  float gdet0 = 0.f;
  if (P.antialiased) {
    float r = det0 / det;
    if (r > 0.f) {
      float comp = sqrtf(r);
      float gr = g_comp * 0.5f / comp;
      gdet0 += gr / det;
      gdet += -gr * det0 / (det * det);
    }
  }
  ga += gdet * c; gc += gdet * a; gb += -2.f * b * gdet;
  float ga0 = ga + gdet0 * c0, gc0 = gc + gdet0 * a0;
  gb += -2.f * b * gdet0;
  // symmetric gradient of cov2: G = [[ga0, gb/2], [gb/2, gc0]]
  float G00 = ga0, G01 = 0.5f * gb, G11 = gc0;
  // dC = J^T G J (3x3 symmetric); J rows: (j00, 0, j02), (0, j11, j12)
  float Jm[2][3] = {{j00, 0.f, j02}, {0.f, j11, j12}};
  float GJ[2][3];
  for (int k = 0; k < 3; ++k) {
    GJ[0][k] = G00 * Jm[0][k] + G01 * Jm[1][k];
    GJ[1][k] = G01 * Jm[0][k] + G11 * Jm[1][k];
  }
  float dC[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) dC[i][j] = Jm[0][i] * GJ[0][j] + Jm[1][i] * GJ[1][j];
  // dJ = 2 G J C
  float dJ[2][3];
  for (int r = 0; r < 2; ++r)
    for (int k = 0; k < 3; ++k) dJ[r][k] = 2.f * (GJ[r][0] * C[0][k] + GJ[r][1] * C[1][k] + GJ[r][2] * C[2][k]);
  // J entries -> z, tx, ty
  float gx = 0.f, gy = 0.f, gz = 0.f;
  float z2 = z * z, z3 = z2 * z;
  gz += -P.fx / z2 * dJ[0][0] - P.fy / z2 * dJ[1][1] + 2.f * P.fx * tx / z3 * dJ[0][2] +
        2.f * P.fy * ty / z3 * dJ[1][2];
  float gtx = -P.fx / z2 * dJ[0][2], gty = -P.fy / z2 * dJ[1][2];
  if (clx) gz += gtx * (tx / z); else gx += gtx;
  if (cly) gz += gty * (ty / z); else gy += gty;
  // means2d
  gx += P.fx / z * g_m2d[0];
  gy += P.fy / z * g_m2d[1];
  gz += -P.fx * x / z2 * g_m2d[0] - P.fy * y / z2 * g_m2d[1];
  gz += g_depth;
  // p = R m + t
  for (int k = 0; k < 3; ++k) g_mean[k] = R[0 * 3 + k] * gx + R[1 * 3 + k] * gy + R[2 * 3 + k] * gz;
  // C = R S R^T: dS = R^T dC R
  float RtdC[3][3], dS[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) RtdC[i][j] = R[0 * 3 + i] * dC[0][j] + R[1 * 3 + i] * dC[1][j] + R[2 * 3 + i] * dC[2][j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) dS[i][j] = RtdC[i][0] * R[0 * 3 + j] + RtdC[i][1] * R[1 * 3 + j] + RtdC[i][2] * R[2 * 3 + j];
  if (gR) {
    float gp[3] = {gx, gy, gz};
    // from p = R m + t and C = R S R^T (dR = 2 dC R S)
    for (int i = 0; i < 3; ++i) {
      gt[i] += gp[i];
      for (int j = 0; j < 3; ++j) {
        float v = gp[i] * mean[j];
        float acc = 0.f;
        for (int k = 0; k < 3; ++k) acc += dC[i][k] * T1[k][j];  // T1 = R S, so (dC R S)_ij
        gR[i * 3 + j] += v + 2.f * acc;
      }
    }
  }
  // S = M M^T: dM = 2 dS M
  float dM[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) dM[i][j] = 2.f * (dS[i][0] * M[0][j] + dS[i][1] * M[1][j] + dS[i][2] * M[2][j]);
  Mat3 dR;
  for (int j = 0; j < 3; ++j) {
    g_scale[j] = dM[0][j] * rq.m[0][j] + dM[1][j] * rq.m[1][j] + dM[2][j] * rq.m[2][j];
    for (int i = 0; i < 3; ++i) dR.m[i][j] = dM[i][j] * scale[j];
  }
  quat_to_rot_vjp(qn, inv, dR, g_quat);
}

// ---- spherical harmonics ------------------------------------------------------------------------------
// Basis values and (optionally) their gradient w.r.t. the unit direction (x, y, z).
GS_HD int sh_basis(int degree, float x, float y, float z, float* B, float (*dB)[3]) {
  int n = 0;
  auto put = [&](float v, float gx, float gy, float gz) {
    B[n] = v;
    if (dB) { dB[n][0] = gx; dB[n][1] = gy; dB[n][2] = gz; }
    ++n;
  };
  put(SH_C0, 0.f, 0.f, 0.f);
  if (degree >= 1) {
    put(-SH_C1 * y, 0.f, -SH_C1, 0.f);
    put(SH_C1 * z, 0.f, 0.f, SH_C1);
    put(-SH_C1 * x, -SH_C1, 0.f, 0.f);
  }
  if (degree >= 2) {
    float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
    put(SH_C2_0 * xy, SH_C2_0 * y, SH_C2_0 * x, 0.f);
    put(SH_C2_1 * yz, 0.f, SH_C2_1 * z, SH_C2_1 * y);
    put(SH_C2_2 * (2.f * zz - xx - yy), -2.f * SH_C2_2 * x, -2.f * SH_C2_2 * y, 4.f * SH_C2_2 * z);
    put(SH_C2_3 * xz, SH_C2_3 * z, 0.f, SH_C2_3 * x);
    put(SH_C2_4 * (xx - yy), 2.f * SH_C2_4 * x, -2.f * SH_C2_4 * y, 0.f);
    if (degree >= 3) {
      put(SH_C3_0 * y * (3.f * xx - yy), 6.f * SH_C3_0 * xy, SH_C3_0 * (3.f * xx - 3.f * yy), 0.f);
      put(SH_C3_1 * xy * z, SH_C3_1 * yz, SH_C3_1 * xz, SH_C3_1 * xy);
      put(SH_C3_2 * y * (4.f * zz - xx - yy), -2.f * SH_C3_2 * xy, SH_C3_2 * (4.f * zz - xx - 3.f * yy),
          8.f * SH_C3_2 * yz);
      put(SH_C3_3 * z * (2.f * zz - 3.f * xx - 3.f * yy), -6.f * SH_C3_3 * xz, -6.f * SH_C3_3 * yz,
          SH_C3_3 * (6.f * zz - 3.f * xx - 3.f * yy));
      put(SH_C3_4 * x * (4.f * zz - xx - yy), SH_C3_4 * (4.f * zz - 3.f * xx - yy), -2.f * SH_C3_4 * xy,
          8.f * SH_C3_4 * xz);
      put(SH_C3_5 * z * (xx - yy), 2.f * SH_C3_5 * xz, -2.f * SH_C3_5 * yz, SH_C3_5 * (xx - yy));
      put(SH_C3_6 * x * (xx - 3.f * yy), SH_C3_6 * (3.f * xx - 3.f * yy), -6.f * SH_C3_6 * xy, 0.f);
    }
  }
  return n;
}

// colour = max(sum_k B_k(dir/|dir|) coeffs[k] + 0.5, 0); coeffs laid out [K][3] with K >= (degree+1)^2.
GS_HD void sh_eval(int degree, int K, const float* dir, const float* coeffs, float* out) {
  float n = sqrtf(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
  float inv = 1.f / gs_max(n, 1e-12f);
  float B[16];
  int nb = sh_basis(degree, dir[0] * inv, dir[1] * inv, dir[2] * inv, B, nullptr);
  (void)K;
  for (int ch = 0; ch < 3; ++ch) {
    float acc = 0.f;
    for (int k = 0; k < nb; ++k) acc += B[k] * coeffs[k * 3 + ch];
    out[ch] = gs_max(acc + 0.5f, 0.f);
  }
}

GS_HD void sh_eval_vjp(int degree, const float* dir, const float* coeffs, const float* g_out, float* g_coeffs,
                       float* g_dir) {
  float n = sqrtf(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
  float inv = 1.f / gs_max(n, 1e-12f);
  float d[3] = {dir[0] * inv, dir[1] * inv, dir[2] * inv};
  float B[16], dB[16][3];
  int nb = sh_basis(degree, d[0], d[1], d[2], B, dB);
  float g[3];
  for (int ch = 0; ch < 3; ++ch) {
    float acc = 0.f;
    for (int k = 0; k < nb; ++k) acc += B[k] * coeffs[k * 3 + ch];
    g[ch] = (acc + 0.5f >= 0.f) ? g_out[ch] : 0.f;
  }
  float gd[3] = {0.f, 0.f, 0.f};
  for (int k = 0; k < nb; ++k) {
    float s = 0.f;
    for (int ch = 0; ch < 3; ++ch) {
      g_coeffs[k * 3 + ch] = B[k] * g[ch];
      s += coeffs[k * 3 + ch] * g[ch];
    }
    gd[0] += s * dB[k][0]; gd[1] += s * dB[k][1]; gd[2] += s * dB[k][2];
  }
  float dot = gd[0] * d[0] + gd[1] * d[1] + gd[2] * d[2];
  float scale = (n > 1e-12f) ? inv : 0.f;
  for (int i = 0; i < 3; ++i) g_dir[i] = (gd[i] - d[i] * dot) * scale;
}

// ---- tile box -----------------------------------------------------------------------------------------
// Pixel box [x0, x1) x [y0, y1) of pixels whose centre lies where alpha can reach 1/255 (+ BOX_MARGIN px),
// clipped to the image. Returns false when empty / not renderable.
GS_HD bool pixel_box(float mx, float my, float sa, float sc, float opacity, int radius, int width, int height,
                     int* box) {
  box[0] = box[1] = box[2] = box[3] = 0;
  if (radius <= 0 || !(opacity * 255.f >= 1.f)) return false;
  if (!(isfinite(mx) && isfinite(my))) return false;
  float lv = gs_max(logf(gs_max(opacity * 255.f, 1e-30f)), 0.f);
  float ex = sqrtf(2.f * lv * sa) * 1.0001f + BOX_MARGIN;
  float ey = sqrtf(2.f * lv * sc) * 1.0001f + BOX_MARGIN;
  float x0 = gs_min(gs_max(ceilf(mx - ex - 0.5f), 0.f), (float)width);
  float x1 = gs_min(gs_max(floorf(mx + ex - 0.5f) + 1.f, 0.f), (float)width);
  float y0 = gs_min(gs_max(ceilf(my - ey - 0.5f), 0.f), (float)height);
  float y1 = gs_min(gs_max(floorf(my + ey - 0.5f) + 1.f, 0.f), (float)height);
  if (!(x0 < x1 && y0 < y1)) return false;
  box[0] = (int)x0; box[1] = (int)y0; box[2] = (int)x1; box[3] = (int)y1;
  return true;
}

// ---- compositing --------------------------------------------------------------------------------------
// power at a pixel centre (pcx, pcy) = (px + 0.5, py + 0.5).
GS_HD float gauss_power(float mx, float my, float ca, float cb, float cc, float pcx, float pcy, float* dx,
                        float* dy) {
  *dx = mx - pcx;
  *dy = my - pcy;
  return -0.5f * (ca * *dx * *dx + cc * *dy * *dy) - cb * *dx * *dy;
}

// exp(x) for x <= 0 (clamped at -87): Cody-Waite reduction + degree-6 polynomial, relative error ~2e-7.
// Branch-free so the CPU compiler vectorises the pixel loops (no libm call); the CUDA kernels use __expf.
GS_HD float fast_exp(float x) {
  x = gs_max(gs_min(x, 0.f), -87.f);
  const float y = x * 1.44269504088896341f;
  const int ni = (int)(y - 0.5f);  // truncation of a negative number = round to nearest of y
  const float nf = (float)ni;
  const float r = (x - nf * 0.693359375f) - nf * (-2.12194440e-4f);
  float p = 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  union {
    int32_t i;
    float f;
  } u;
  u.i = (ni + 127) << 23;
  return p * u.f;
}

// power below which alpha is certainly < 1/255 (a small margin keeps the exact test decisive).
GS_HD float power_floor(float opacity) { return -logf(gs_max(opacity * 255.f, 1e-30f)) - 1e-3f; }

}  // namespace gs
