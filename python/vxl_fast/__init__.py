"""vxl_fast: fast inference for the Video-XL long-video language model."""

from .config import EXTENDED_RATIOS, SUPPORTED_RATIOS, VideoXLConfig
from .api import VideoXL
from .engine.stats import GenerationOutput
from .errors import CheckpointError, EncodeCancelled, MemoryFileError, MemoryPlanError
from .options import GenerationOptions
from .runtime import RuntimeOptions
from .video_memory import VideoMemory

__all__ = ["VideoXL", "VideoMemory", "VideoXLConfig", "GenerationOutput", "GenerationOptions", "RuntimeOptions", "CheckpointError",
           "EncodeCancelled", "MemoryFileError", "MemoryPlanError", "SUPPORTED_RATIOS", "EXTENDED_RATIOS"]
__version__ = "0.1.0"
