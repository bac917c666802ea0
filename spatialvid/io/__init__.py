"""Ingest: decode videos / image folders (streaming) and select keyframes.

Public API: :func:`probe`, :func:`iter_frames`, :func:`ingest` (analyse + select + write keyframes),
:func:`select_keyframes`, :class:`KeyframeConfig`, :class:`Keyframe`.
"""

from spatialvid.io.decode import (
    Frame,
    SourceInfo,
    frame_index_from_name,
    is_video,
    iter_frames,
    list_images,
    natural_key,
    probe,
    read_image,
    video_frame_name,
    working_size,
)
from spatialvid.io.keyframes import (
    FrameStats,
    IngestResult,
    Keyframe,
    KeyframeConfig,
    analyse,
    ingest,
    select_keyframes,
    usable_frames,
)

__all__ = [
    "Frame", "SourceInfo", "frame_index_from_name", "is_video", "iter_frames", "list_images", "natural_key",
    "probe", "read_image", "video_frame_name", "working_size", "FrameStats", "IngestResult", "Keyframe",
    "KeyframeConfig", "analyse", "ingest", "select_keyframes", "usable_frames",
]
