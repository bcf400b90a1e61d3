"""Video-XL as an lmms-eval model (``--model vxl_fast``), answering through :class:`.session.Evaluator`.

  python -m lmms_eval --model vxl_fast \\
      --model_args pretrained=PATH,num_frames=128,compression_ratio=8 --tasks videomme ...

Model args: ``pretrained`` (a checkpoint folder or hub id), ``num_frames`` (default 128, the
reference wrapper's ``max_frames_num``) or ``fps`` with ``max_frames``, ``compression_ratio``
(``8``, or ``2/4/8`` drawn per window, or ``config`` for the checkpoint's ``beacon_ratio``
draw), ``device``, ``dtype``, ``max_new_tokens`` (when a task gives none), ``system_prompt``
(text or a file), ``seed`` (sampling), ``group`` (share one encode per video; default true),
``score``: what ``loglikelihood`` reports first — ``nll`` (default), the summed negative
log-probability of the continuation, because lmms-eval 0.7's multiple-choice and perplexity
metrics take the smallest value as the likeliest (its built-in models return a loss); ``logprob``
the summed log-probability, as ``lmms.loglikelihood``'s docstring states. lmms-eval's
``--batch_size`` is accepted and changes nothing: requests are grouped by video instead.
"""

from __future__ import annotations

from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from tqdm import tqdm

from ..api import VideoXL
from ..options import DEFAULT_MAX_NEW_TOKENS, DEFAULT_RATIO
from .session import Evaluator, Item, Sampling, generation_options, visual_key


def parse_ratio(value) -> int | list[int] | str:
    """``8`` → 8, ``"2/4/8"`` → [2, 4, 8], ``"config"`` stays (model args cannot hold commas)."""
    if isinstance(value, int) or value == "config":
        return value
    parts = str(value).split("/")
    if not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"compression_ratio must be an integer, a list like 2/4/8, or 'config'; got {value!r}")
    ratios = [int(p) for p in parts]
    return ratios[0] if len(ratios) == 1 else ratios


def _flag(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


class VideoXLLmms(lmms):
    """lmms-eval's ``lmms`` over a :class:`VideoXL`: each video is encoded once for all its requests."""

    def __init__(self, pretrained: str, num_frames: int | None = None, fps: float | None = None,
                 max_frames: int | None = None, compression_ratio=DEFAULT_RATIO, device: str | None = None,
                 dtype: str | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, system_prompt: str = "",
                 seed: int = 0, group=True, score: str = "nll", batch_size=1, max_batch_size=None, **unknown):
        super().__init__()
        if unknown:
            raise TypeError(f"unknown vxl_fast model args: {', '.join(sorted(unknown))}")
        if score not in ("nll", "logprob"):
            raise ValueError(f"score must be nll or logprob, got {score!r}")
        self.sign = -1.0 if score == "nll" else 1.0
        system = self._resolve_system_prompt(system_prompt) or None
        self.sampling = Sampling(None if num_frames is None else int(num_frames), None if fps is None else float(fps),
                                 None if max_frames is None else int(max_frames), parse_ratio(compression_ratio), system)
        self.max_new_tokens, self.seed = int(max_new_tokens), int(seed)
        self.model = VideoXL.from_pretrained(pretrained, device=device, dtype=dtype)
        self.evaluator = Evaluator(self.model, self.sampling, group=_flag(group))

    def _doc(self, task, split, doc_id):
        return self.task_dict[task][split][doc_id]

    def generate_until(self, requests: list[Instance]) -> list[str]:
        items = []
        for context, gen_kwargs, doc_to_visual, doc_id, task, split in (r.args for r in requests):
            options = generation_options(gen_kwargs, self.max_new_tokens, self.seed)
            items.append(Item(doc_to_visual(self._doc(task, split, doc_id)), context, options))
        with tqdm(total=len(items), disable=self.rank != 0, desc="Model Responding") as bar:
            return self.evaluator.generate(items, lambda: bar.update(1))

    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        """(score, is greedy) per request. NOTE: wrapped in ``GenerationResult``: lmms-eval 0.7.3's
        evaluator turns any other tuple into its string (``unwrap_generation_output``)."""
        items = []
        for context, target, doc_to_visual, doc_id, task, split in (r.args for r in requests):
            doc = self._doc(task, split, doc_id)
            continuation = target if isinstance(target, str) else target(doc)
            items.append(Item(doc_to_visual(doc), context, continuation=str(continuation)))
        with tqdm(total=len(items), disable=self.rank != 0, desc="Model Responding") as bar:
            scores = self.evaluator.loglikelihood(items, lambda: bar.update(1))
        return [GenerationResult(text=(self.sign * logprob, greedy)) for logprob, greedy in scores]

    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        """Each round asks the context ``doc_to_text`` builds from the answers so far; rounds about
        the same visuals reuse one memory."""
        out = []
        with tqdm(total=len(requests), disable=self.rank != 0, desc="Model Responding") as bar:
            for context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split in (r.args for r in requests):
                out.append(self._rounds(context, gen_kwargs, doc_to_visual, doc_to_text, self._doc(task, split, doc_id)))
                bar.update(1)
        return out

    def _rounds(self, context, gen_kwargs, doc_to_visual, doc_to_text, doc) -> list[str]:
        options = generation_options({k: v for k, v in (gen_kwargs or {}).items() if k != "until"},
                                     self.max_new_tokens, self.seed)
        visuals, outputs, info, memories = doc_to_visual(doc), [], None, {}
        for round_idx in range(1_000):
            if round_idx:
                visuals, context, terminal, outputs, info = doc_to_text(
                    doc, previous_output=list(outputs), round_idx=round_idx, previous_round_info=info)
                outputs = list(outputs)
                if terminal:
                    return outputs
            item = Item(visuals, context, options)
            outputs.append(self.evaluator.generate([item])[0] if not self.evaluator.group else
                           self.model.ask(self._memory(memories, visuals), context, **options).text)
        raise RuntimeError("a multi-round task ran 1000 rounds without its terminal signal")

    def _memory(self, memories: dict, visuals):
        key = visual_key(visuals)
        if key not in memories:
            memories.clear()
            memories[key] = self.evaluator.encode(visuals)
        return memories[key]
