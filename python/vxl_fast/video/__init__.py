"""Visual input: frame sampling, a minimal video reader, CLIP preprocessing, anyres image tiles."""
