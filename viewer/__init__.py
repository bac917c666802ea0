"""spatialvid's web viewer (viser): explore a scene, render exact views, fill, edit camera paths, watch training.

Start it with ``spatialvid view SCENE_DIR`` or from Python::

    from viewer import ViewerApp, ViewerConfig
    app = ViewerApp(Scene.load(d), scene_dir=d, config=ViewerConfig(port=8080))
    print(app.url); app.serve_forever()
"""

from viewer.app import MODES, View, ViewerApp, ViewerConfig

__all__ = ["MODES", "View", "ViewerApp", "ViewerConfig"]
