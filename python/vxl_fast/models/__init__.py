"""Model composition: CLIP vision tower, projector, Qwen2 with VST memory."""
