"""Training: fit Gaussians to posed images (3D Gaussian Splatting).

* :class:`TrainConfig` + :func:`load_config` (YAML presets in ``configs/``), CLI overrides.
* :class:`Trainer` (the loop, checkpoints, evaluation), :func:`reconstruct` (input -> scene folder).
* Densification strategies :class:`DefaultStrategy` (3DGS adaptive density control) and :class:`MCMCStrategy`.
"""

from spatialvid.train.config import PRESETS, TrainConfig, load_config
from spatialvid.train.data import TrainData, make_train_data, split_indices
from spatialvid.train.pipeline import reconstruct, resolve_input
from spatialvid.train.strategy import DefaultStrategy, MCMCStrategy, Strategy
from spatialvid.train.trainer import StepEvent, Trainer, TrainingDiverged, TrainResult

__all__ = ["PRESETS", "DefaultStrategy", "MCMCStrategy", "StepEvent", "Strategy", "TrainConfig", "TrainData", "TrainResult",
           "Trainer", "TrainingDiverged", "load_config", "make_train_data", "reconstruct", "resolve_input",
           "split_indices"]
