"""vxl_fast: fast inference for the Video-XL long-video language model."""

from .config import EXTENDED_RATIOS, SUPPORTED_RATIOS, VideoXLConfig
from .engine import VideoXL
from .errors import CheckpointError, MemoryPlanError
from .memory.video_memory import VideoMemory
from .generate import GenerationOutput

__all__ = ["VideoXL", "VideoMemory", "VideoXLConfig", "GenerationOutput", "CheckpointError", "MemoryPlanError",
           "SUPPORTED_RATIOS", "EXTENDED_RATIOS"]
__version__ = "0.1.0"
