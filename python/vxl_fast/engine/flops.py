"""Operation counts of the language model (a multiply-add is 2 FLOPs): what a step runs, and
what a plain forward of the same rows would run that this engine skips — a visual window's last
layer beyond its VSTs' K/V, and the logits of every row but the one a token is drawn from."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import VideoXLConfig
from ..memory.plan import VisualWindow


@dataclass
class Flops:
    run: float = 0.0
    skipped: float = 0.0

    def __iadd__(self, other: "Flops") -> "Flops":
        self.run += other.run
        self.skipped += other.skipped
        return self


def linear_flops(cfg: VideoXLConfig, rows: int) -> float:
    """One decoder layer's projections and MLP over ``rows`` rows."""
    llm = cfg.llm
    d_q, d_kv = llm.num_heads * llm.head_dim, llm.num_kv_heads * llm.head_dim
    return 2.0 * rows * llm.hidden_size * (d_q + 2 * d_kv + d_q + 3 * llm.intermediate_size)


def attention_flops(cfg: VideoXLConfig, rows: int, keys_before: int) -> float:
    """One layer's attention: each row sees the kept slots and the window's rows up to itself."""
    visible = rows * keys_before + rows * (rows + 1) / 2
    return 4.0 * cfg.llm.num_heads * cfg.llm.head_dim * visible


def layer_flops(cfg: VideoXLConfig, rows: int, keys_before: int) -> float:
    return linear_flops(cfg, rows) + attention_flops(cfg, rows, keys_before)


def _logits(cfg: VideoXLConfig, rows: int) -> float:
    return 2.0 * rows * cfg.llm.hidden_size * cfg.llm.vocab_size


def text_flops(cfg: VideoXLConfig, rows: int, keys_before: int, logit_rows: int) -> Flops:
    """Text rows (sink, question, a fed-back token), logits for ``logit_rows`` of them."""
    if rows == 0:
        return Flops()
    return Flops(cfg.llm.num_layers * layer_flops(cfg, rows, keys_before) + _logits(cfg, logit_rows),
                 _logits(cfg, rows - logit_rows))


def window_flops(cfg: VideoXLConfig, w: VisualWindow) -> Flops:
    """A visual window: every layer but the last in full; in the last only the VSTs' K/V."""
    llm = cfg.llm
    layer = layer_flops(cfg, w.rows, w.kv_before)
    vst_kv = 2 * w.n_vst * llm.hidden_size * 2 * llm.num_kv_heads * llm.head_dim
    run = (llm.num_layers - 1) * layer + vst_kv
    return Flops(run, llm.num_layers * layer + _logits(cfg, w.rows) - run)


def encode_flops(cfg: VideoXLConfig, sink: int, windows: list[VisualWindow]) -> Flops:
    total = text_flops(cfg, sink, 0, 0)
    for w in windows:
        total += window_flops(cfg, w)
    return total


def answer_flops(cfg: VideoXLConfig, kept: int, pending: VisualWindow | None, question: int,
                 new_tokens: int) -> Flops:
    """An answer over ``kept`` slots: the pending window, the question (logits of its last row),
    and each generated token fed back but the last."""
    total = Flops()
    if pending is not None:
        total += window_flops(cfg, pending)
        kept += pending.n_vst
    total += text_flops(cfg, question, kept, 1)
    kept += question
    for i in range(max(new_tokens - 1, 0)):
        total += text_flops(cfg, 1, kept + i, 1)
    return total
