"""The VST memory as pure data: static KV buffers, the memory state and its files, window planning,
the memory budget. Nothing here imports a model, a layer or the engine."""
