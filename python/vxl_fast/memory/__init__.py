"""The VST memory: window planning (pure functions) and the static KV buffers."""
