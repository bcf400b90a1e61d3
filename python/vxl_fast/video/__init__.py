"""Visual input: every kind of source, upstream's frame sampling, exact decoding, CLIP preprocessing."""

from .source import LoadedVideo, VideoSource, load_video, open_video

__all__ = ["load_video", "open_video", "LoadedVideo", "VideoSource"]
