"""Evaluation: an lmms-eval model plugin that encodes each video once, and the needle-in-a-haystack test."""
