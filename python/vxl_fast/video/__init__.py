"""Visual input: every kind of source, upstream's frame sampling, exact decoding, CLIP preprocessing."""

from .source import FrameReader, LoadedVideo, load_video, open_video

VideoSource = FrameReader  # the name before FrameReader

__all__ = ["load_video", "open_video", "LoadedVideo", "FrameReader", "VideoSource"]
