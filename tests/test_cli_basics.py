"""The `spatialvid` command: every subcommand has --help; user errors are one line on stderr, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

import spatialvid.cli as cli
from spatialvid.cli import SUBCOMMANDS, main
from spatialvid.errors import FormatError

EXPECTED = {"poses", "reconstruct", "render", "fill", "view", "eval", "demo", "sample"}


def test_all_subcommands_registered():
    assert EXPECTED <= set(SUBCOMMANDS)
    parser = cli.build_parser()
    help_text = parser.format_help()
    for name in EXPECTED:
        assert name in help_text


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as ei:
        main([name, "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: spatialvid {name}")
    assert len(out.splitlines()) >= 3  # more than a bare usage line


def _fail_on(monkeypatch, name: str, exc: Exception) -> None:
    """Replace subcommand ``name`` with one that raises ``exc`` (build_parser imports and registers it)."""
    mod = __import__(f"spatialvid.cli.{name}", fromlist=["register"])

    def register(sub):
        p = sub.add_parser(name, help="test stand-in")
        p.add_argument("target")

        def run(args):
            raise exc

        p.set_defaults(func=run)

    monkeypatch.setattr(mod, "register", register)


def test_user_error_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "broken.ply"
    _fail_on(monkeypatch, "render", FormatError(bad, "truncated PLY: expected 100 bytes, got 7"))
    rc = main(["render", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("spatialvid render: error: ") and str(bad) in err and "truncated PLY" in err


def test_error_via_python_m_subprocess(tmp_path):
    """The real entry point (``python -m spatialvid``, via runpy) in a fresh process: loading a folder that
    is not a scene prints one line naming the file, no traceback, exit 2."""
    code = (
        "import runpy, sys, spatialvid.cli.eval as m\n"
        "def register(sub):\n"
        "    p = sub.add_parser('eval')\n"
        "    p.add_argument('scene')\n"
        "    def run(a):\n"
        "        from spatialvid.scene import Scene\n"
        "        Scene.load(a.scene)\n"
        "    p.set_defaults(func=run)\n"
        "m.register = register\n"
        "sys.argv = ['spatialvid', 'eval', sys.argv[-1]]\n"
        "runpy.run_module('spatialvid', run_name='__main__')\n"
    )
    not_scene = tmp_path / "not_a_scene"
    not_scene.mkdir()
    r = subprocess.run([sys.executable, "-c", code, str(not_scene)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert r.stderr.startswith("spatialvid eval: error: ") and str(not_scene / "scene.json") in r.stderr
