"""Camera pose refinement: a learned se(3) correction per training camera.

The corrected world-to-camera matrix is ``D(delta) @ w2c`` (OpenCV axes), with ``delta = (rho, phi)``:
translation ``rho`` (world units, in the camera frame) and rotation vector ``phi`` (radians, camera frame).
Rendering Gaussians with ``D @ w2c`` equals rendering the Gaussians moved by the world-space rigid motion
``A = w2c^-1 D w2c`` with the original ``w2c``, so the correction is applied to the Gaussians (differentiable
through any rasterizer backend, whether or not it returns viewmat gradients).
"""

from __future__ import annotations

import torch


def _axis_angle_terms(phi: torch.Tensor):
    theta2 = (phi * phi).sum(-1)
    theta = torch.sqrt(theta2 + 1e-20)
    small = theta < 1e-3
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)            # sin t / t
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-20))  # (1-cos t)/t^2
    h = torch.where(small, 0.5 - theta2 / 48, torch.sin(theta / 2) / theta)      # sin(t/2)/t
    return theta, a, b, h


def skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*v.shape[:-1], 3, 3)


def rotvec_to_matrix(phi: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation vector [...,3] (radians) -> rotation matrix [...,3,3]."""
    _, a, b, _ = _axis_angle_terms(phi)
    k = skew(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device).expand(k.shape)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def rotvec_to_quat(phi: torch.Tensor) -> torch.Tensor:
    """Rotation vector [...,3] -> unit quaternion [...,4] (w, x, y, z)."""
    theta, _, _, h = _axis_angle_terms(phi)
    return torch.cat([torch.cos(theta / 2)[..., None], h[..., None] * phi], -1)


def quat_mul(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Hamilton product (w, x, y, z); broadcasts."""
    w1, x1, y1, z1 = q1.unbind(-1)
    w2, x2, y2, z2 = q2.unbind(-1)
    return torch.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], -1)


def delta_matrix(delta: torch.Tensor) -> torch.Tensor:
    """[6] (rho, phi) -> 4x4 rigid correction D (camera frame)."""
    m = torch.eye(4, dtype=delta.dtype, device=delta.device)
    m = m.clone()
    m[:3, :3] = rotvec_to_matrix(delta[3:])
    m[:3, 3] = delta[:3]
    return m


def corrected_viewmat(viewmat: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``D(delta) @ viewmat`` (world-to-camera, OpenCV)."""
    return delta_matrix(delta) @ viewmat


def move_gaussians(means: torch.Tensor, quats: torch.Tensor, viewmat: torch.Tensor, delta: torch.Tensor):
    """Apply ``A = w2c^-1 D(delta) w2c`` to Gaussian means [N,3] and rotations (wxyz) [N,4]; differentiable
    w.r.t. ``delta`` (and the Gaussians)."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    rho, phi = delta[:3], delta[3:]
    Rd = rotvec_to_matrix(phi)
    Ra = R.T @ Rd @ R
    ta = R.T @ (Rd @ t + rho - t)
    new_means = means @ Ra.T + ta
    qa = rotvec_to_quat(R.T @ phi)  # the world-frame rotation of A: axis R^T phi, same angle
    new_quats = quat_mul(qa[None], quats)
    return new_means, new_quats


class PoseRefiner(torch.nn.Module):
    """Per-camera se(3) corrections [C,6], initialised to zero."""

    def __init__(self, num_cameras: int):
        super().__init__()
        self.deltas = torch.nn.Parameter(torch.zeros(num_cameras, 6))

    def apply(self, idx: int, means, quats, viewmat):
        return move_gaussians(means, quats, viewmat, self.deltas[idx])

    @torch.no_grad()
    def refined_viewmats(self, viewmats: torch.Tensor) -> torch.Tensor:
        """[C,4,4] corrected world-to-camera matrices for all cameras."""
        return torch.stack([corrected_viewmat(viewmats[i], self.deltas[i]) for i in range(len(viewmats))])
