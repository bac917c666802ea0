"""`spatialvid export`: write a scene as Gaussian splats (.ply/.splat/.spz), a triangle mesh (.glb/.ply/.obj),
nerfstudio cameras (transforms.json) or a COLMAP text model."""

from __future__ import annotations

import time
from pathlib import Path

from spatialvid.cli._common import add_parser
from spatialvid.errors import SpatialvidError

DESCRIPTION = """\
Export a scene for other tools.

Output (-o OUT), chosen by the name unless --format / --mesh:
  OUT.ply              3D Gaussian Splatting PLY (every 3DGS tool reads it; keeps SH, origin, step)
  OUT.ply --mesh       a triangle mesh PLY (binary, vertex colours) instead
  OUT.splat            the 32-byte-per-splat web format (degree-0 colour)
  OUT.spz              Niantic's compressed splats (gzip, 24-bit positions, 8-bit attributes, SH kept);
                       by default Gaussians below opacity 0.01 are left out and positions keep 11
                       fractional bits (8x smaller than the PLY on the demo scene, -0.2 dB)
  OUT.glb / OUT.obj    a triangle mesh: binary glTF with vertex colours and normals / OBJ with vertex colours
  OUT.json             nerfstudio transforms.json (the cameras)
  OUT (other)          a COLMAP text model folder (cameras, images, the Gaussian centres as points3D)

The mesh: every training camera (plus --orbit-views) renders depth (expected camera z) and colour; the
solid pixels away from depth edges are fused in open3d's TSDF (voxel block grid); the surface is
extracted with marching cubes, components smaller than --min-component of the largest are dropped and
it is decimated to --max-faces. It is written in the scene's original frame and units when the scene
stores its normalisation (scenes made by `reconstruct`), else in the scene's frame (--frame scene
forces that). Splat formats and COLMAP points are always in the scene's frame. A scene trained with
`reconstruct --preset mesh` (depth-normal, multi-view and sparse depth terms) gives a closer mesh: on
the bundled sample chamfer 0.72 % of the extent instead of 1.44 %.

--crop-box / --crop-sphere are in the scene's frame (the coordinates of gaussians.ply, `view` and
`render`) and keep the Gaussians whose centres lie inside (both: inside both); a mesh is also clipped
to them. Files are written atomically; bad input is one error line (exit 2) and nothing is written.
"""

EPILOG = """\
Examples:
  spatialvid export scenes/sample -o sample.spz
  spatialvid export scenes/sample -o sample.glb --max-faces 200000 --captured-only
  spatialvid export scenes/sample -o sample_mesh.ply --mesh --crop-sphere 0,0,0,1.5
  spatialvid export scenes/sample -o sample.splat --crop-box -1,-1,-0.5,1,1,1
"""

FORMATS = ("ply", "splat", "spz", "mesh", "transforms", "colmap")
# The CLI's .spz defaults, chosen on the trained demo scene (benchmarks/export.py, `spz.compact`): 8.1x smaller
# than its PLY at -0.22 dB held-out PSNR (the format's own defaults, 0 and 12 bits: 7.4x, -0.17 dB).
SPZ_MIN_OPACITY = 0.01
SPZ_FRACTIONAL_BITS = 11


def register(sub) -> None:
    from spatialvid.formats.mesh import MeshConfig

    d = MeshConfig()
    p = add_parser(sub, "export", help="Export a scene: Gaussian PLY/.splat/.spz, mesh GLB/PLY/OBJ, cameras",
                   description=DESCRIPTION)
    p.epilog = EPILOG
    p.add_argument("scene", metavar="SCENE_DIR", help="scene folder to export")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file (or COLMAP folder)")
    p.add_argument("--format", default=None, choices=FORMATS, help="format (default: from the output name)")
    p.add_argument("--mesh", action="store_true", help="write a triangle mesh (needed for a mesh .ply; "
                                                        ".glb/.obj are always meshes)")
    p.add_argument("--crop-box", default=None, metavar="XMIN,YMIN,ZMIN,XMAX,YMAX,ZMAX",
                   help="keep only what lies in this axis-aligned box (scene frame)")
    p.add_argument("--crop-sphere", default=None, metavar="CX,CY,CZ,R",
                   help="keep only what lies in this sphere (scene frame)")
    p.add_argument("--captured-only", action="store_true",
                   help="leave generated Gaussians (origin = 1, added by fill) out")
    p.add_argument("--min-opacity", type=float, default=None,
                   help="splat/COLMAP exports: leave out Gaussians fainter than this opacity (default: "
                        f"{SPZ_MIN_OPACITY:g} for .spz, 0 (keep all) for the others)")
    p.add_argument("--fractional-bits", type=int, default=None,
                   help=f".spz: fractional bits of the 24-bit positions (default: {SPZ_FRACTIONAL_BITS}, fewer if "
                        "coordinates would overflow; 12 doubles the precision for ~5%% more bytes)")
    g = p.add_argument_group("mesh options")
    g.add_argument("--max-faces", type=int, default=d.max_faces, help=f"decimate to at most this many triangles "
                                                                        f"(default: {d.max_faces:,})")
    g.add_argument("--voxel-size", type=float, default=None,
                   help="TSDF voxel edge in the output's units (default: twice the median pixel footprint)")
    g.add_argument("--orbit-views", type=int, default=d.orbit_views,
                   help="extra views on an orbit around the scene to fuse (default: 0, training cameras only)")
    g.add_argument("--resolution", type=float, default=d.resolution,
                   help="render size as a fraction of the training cameras' (default: 1)")
    g.add_argument("--min-component", type=float, default=d.min_component,
                   help=f"drop pieces with fewer faces than this fraction of the largest (default: {d.min_component:g})")
    g.add_argument("--frame", default=None, choices=("original", "scene"),
                   help="mesh coordinates: the scene's original frame/units (default when the scene has its "
                        "normalisation) or the scene's frame")
    g.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda", "torch"),
                   help="rasterizer backend (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolve_format(out: Path, fmt: str | None, mesh: bool) -> str:
    """The format to write, checking that the name and the flags agree."""
    from spatialvid.formats import guess_format
    from spatialvid.formats.mesh import MESH_SUFFIXES

    guessed = guess_format(out)
    if mesh:
        if fmt not in (None, "mesh"):
            raise SpatialvidError(f"--mesh contradicts --format {fmt}")
        fmt = "mesh"
    if fmt is None:
        fmt = guessed
    suffix = out.suffix.lower()
    if fmt == "mesh":
        if suffix not in MESH_SUFFIXES:
            raise SpatialvidError(f"{out}: a mesh is written as {', '.join(MESH_SUFFIXES)}; rename the output")
    elif guessed != fmt and not (fmt == "colmap" and suffix == ""):
        raise SpatialvidError(f"{out}: the name says {guessed} but --format is {fmt}; "
                              + ("add --mesh for a mesh .ply" if suffix == ".ply" else "rename the output"))
    return fmt


def trained_for_geometry(scene) -> bool:
    """Whether the scene's last reconstruct used a geometry term (normal, multi-view, sparse depth), or says
    nothing of its config."""
    for h in reversed(getattr(scene, "history", None) or []):
        c = h.get("info", {}).get("config") if h.get("kind") == "reconstruct" else None
        if isinstance(c, dict):
            return any(float(c.get(k, 0) or 0) > 0 for k in ("normal_weight", "multiview_weight", "depth_sparse_weight"))
    return True


def run(args) -> int:
    from spatialvid.formats import export_scene, select_gaussians
    from spatialvid.formats.crop import parse_crop
    from spatialvid.formats.mesh import MeshConfig
    from spatialvid.scene import Scene

    out = Path(args.output)
    fmt = resolve_format(out, args.format, args.mesh)
    crop = parse_crop(args.crop_box, args.crop_sphere)
    explicit_min_opacity = args.min_opacity is not None
    if args.min_opacity is None:
        args.min_opacity = SPZ_MIN_OPACITY if fmt == "spz" else 0.0
    if args.fractional_bits is None and fmt == "spz":
        args.fractional_bits = SPZ_FRACTIONAL_BITS
    if out.exists() and out.is_dir() and fmt != "colmap":
        raise SpatialvidError(f"{out} is a folder; give a file name")
    scene = Scene.load(args.scene)
    mesh_cfg = None
    if fmt == "mesh":
        frame = args.frame or "original"
        mesh_cfg = MeshConfig(max_faces=args.max_faces, voxel_size=args.voxel_size, orbit_views=args.orbit_views,
                              resolution=args.resolution, min_component=args.min_component, frame=frame,
                              backend=args.backend, crop=crop, captured_only=args.captured_only,
                              progress=not args.quiet)
        mesh_cfg.validate()
    elif fmt != "transforms":
        if not 0.0 <= args.min_opacity < 1.0:
            raise SpatialvidError(f"--min-opacity must be in [0, 1), got {args.min_opacity}")
        if args.fractional_bits is not None and not 0 <= args.fractional_bits <= 23:
            raise SpatialvidError(f"--fractional-bits must be in 0..23, got {args.fractional_bits}")
        if len(select_gaussians(scene, crop, args.captured_only, args.min_opacity)) == 0:
            raise SpatialvidError("no Gaussians left to export (after the crop / --captured-only / --min-opacity)")
    t0 = time.perf_counter()
    if fmt == "mesh":
        from spatialvid.formats.mesh import scene_to_mesh, write_mesh

        mesh = scene_to_mesh(scene, mesh_cfg)
        write_mesh(out, mesh)
        s = mesh.stats
        frame = "original frame, normalisation undone" if s["frame"] == "original" else "scene frame"
        print(f"wrote {out}: mesh, {s['faces']:,} faces, {s['vertices']:,} vertices ({s['views']} views fused, "
              f"voxel {s['voxel_size']:.4g}, {s['components_dropped']} small pieces dropped, {frame}); "
              f"{out.stat().st_size / 1e6:.2f} MB in {time.perf_counter() - t0:.1f} s")
        if not args.quiet and not trained_for_geometry(scene):
            print("note: this scene was trained for pictures only; `spatialvid reconstruct --preset mesh` adds "
                  "geometry terms whose surfaces a mesh follows more closely (README: Export)")
        return 0
    if fmt == "transforms" and explicit_min_opacity and args.min_opacity > 0:
        raise SpatialvidError("transforms.json holds only cameras: --min-opacity changes nothing")
    path = export_scene(scene, out, fmt=fmt, crop=crop, captured_only=args.captured_only,
                        min_opacity=args.min_opacity, fractional_bits=args.fractional_bits)
    n = len(select_gaussians(scene, crop, args.captured_only, args.min_opacity))
    size = path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    what = f"{len(scene.cameras)} cameras" if fmt == "transforms" else f"{n:,} of {len(scene.gaussians):,} Gaussians"
    print(f"wrote {path}: {fmt}, {what}, {size / 1e6:.2f} MB in {time.perf_counter() - t0:.1f} s"
          + (f" (crop: {crop.describe()})" if crop.active else ""))
    return 0
