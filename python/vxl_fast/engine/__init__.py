"""The engine: one runner owning the device, the RoPE table and the KV buffers; window
compression and answering as functions over a runner and a :class:`~vxl_fast.memory.state.MemoryState`."""
