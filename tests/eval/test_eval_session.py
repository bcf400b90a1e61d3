"""The evaluation core: grouped requests (one encode per video) answer as VideoXL.generate does,
and the log-likelihood of a continuation equals a direct computation from generate's logits."""

from __future__ import annotations

import pytest
import torch

from conftest import needs_av
from vxl_fast.engine.answer import prefill
from vxl_fast.eval.scoring import loglikelihood, score
from vxl_fast.eval.session import Evaluator, Item, Sampling, generation_options
from vxl_fast.prompt import build_prompt, tokenize_prompt

QUESTIONS = ["What happens in the video?", "Which color is it?", "How many things move?"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from localtask import write_video

    folder = tmp_path_factory.mktemp("videos")
    return [str(write_video(folder / f"v{i}.mp4", seed=i, frames=12)) for i in range(2)]


@needs_av
def test_grouped_answers_equal_generate(tiny_model, videos):
    sampling = Sampling(num_frames=10, compression_ratio=4)
    greedy = generation_options({"until": ["\n\n"], "max_new_tokens": 5, "temperature": 0}, 64, 0)
    sampled = generation_options({"max_new_tokens": 4, "temperature": 0.7, "top_p": 0.9}, 64, 3)
    items = [Item([v], q, greedy) for v in videos for q in QUESTIONS] + [Item([videos[0]], QUESTIONS[0], sampled)]
    grouped = Evaluator(tiny_model, sampling)
    answers = grouped.generate(items[::-1])[::-1]  # the order of the requests does not matter
    assert grouped.encodes == len(videos)
    direct = Evaluator(tiny_model, sampling, group=False)
    assert answers == direct.generate(items)
    assert direct.encodes == len(items)
    assert len(set(answers)) > 1


@needs_av
def test_system_prompt_reaches_both_paths(tiny_model, videos):
    sampling = Sampling(num_frames=10, compression_ratio=2, system="Answer briefly.")
    opts = generation_options({"max_new_tokens": 4}, 64, 0)
    item = Item([videos[1]], QUESTIONS[1], opts)
    evaluator = Evaluator(tiny_model, sampling)
    assert evaluator.generate([item]) == [evaluator.direct(item)]


def _step_decoded(model, memory, question: str, cont: list[int]) -> torch.Tensor:
    """Log-probabilities of ``cont`` token by token through generation's own decode step."""
    tok = tokenize_prompt(model.tokenizer, build_prompt(question))
    runner = model.runner
    with runner.lock:
        cache, _, logits = prefill(runner, memory.state, tok.after, len(cont), None)
        out = []
        for token in cont:
            out.append(torch.log_softmax(logits.float(), -1)[token])
            with runner.session():
                logits = runner.decode(cache, token)
    return torch.stack(out)


@needs_av
def test_loglikelihood_equals_direct_computation(tiny_model, videos):
    evaluator = Evaluator(tiny_model, Sampling(num_frames=10, compression_ratio=4))
    memory = evaluator.encode([videos[0]])
    question = QUESTIONS[0]
    out = tiny_model.generate(video=videos[0], num_frames=10, compression_ratio=4, prompt=question,
                              max_new_tokens=4, ignore_eos=True)
    first = torch.log_softmax(out.logits.float(), -1)
    for token in (out.token_ids[0], 7, 300):  # one token: exactly generate's first distribution
        assert score(memory, question, [token]) == (first[token].item(), token == out.token_ids[0])
    logprob, greedy = score(memory, question, out.token_ids)  # generate's greedy answer
    assert greedy
    assert logprob == pytest.approx(_step_decoded(tiny_model, memory, question, out.token_ids).sum().item(),
                                    rel=1e-5, abs=1e-5)
    other = [out.token_ids[0], 11, 12]
    logprob, greedy = score(memory, question, other)
    assert not greedy
    assert logprob == pytest.approx(_step_decoded(tiny_model, memory, question, other).sum().item(),
                                    rel=1e-5, abs=1e-5)
    text = " B"
    assert loglikelihood(memory, question, text) == score(memory, question, tiny_model.tokenizer(text)["input_ids"])
    again = tiny_model.ask(memory, question, max_new_tokens=4, ignore_eos=True)
    assert again.token_ids == out.token_ids  # the memory is left as it was


@needs_av
def test_grouped_loglikelihood_encodes_each_video_once(tiny_model, videos):
    evaluator = Evaluator(tiny_model, Sampling(num_frames=10, compression_ratio=4))
    items = [Item([v], QUESTIONS[0], continuation=c) for v in videos for c in (" A", " B", " C")]
    scores = evaluator.loglikelihood(items)
    assert evaluator.encodes == len(videos)
    for v in videos:
        memory = evaluator.encode([v])
        expected = [loglikelihood(memory, QUESTIONS[0], c) for c in (" A", " B", " C")]
        assert [s for s, i in zip(scores, items) if i.visuals == [v]] == expected


def test_generation_options_from_lmms_eval_kwargs():
    greedy = generation_options({"until": ["\n\n", ""], "temperature": 0, "top_p": None, "num_beams": 1}, 32, 0)
    assert greedy == {"max_new_tokens": 32, "stop": ["\n\n"], "do_sample": False}
    sampled = generation_options({"until": "Q:", "max_new_tokens": 7, "temperature": 0.5, "top_p": 0.9}, 32, 5)
    assert sampled == {"max_new_tokens": 7, "stop": ["Q:"], "do_sample": True, "top_p": 0.9,
                       "temperature": 0.5, "seed": 5}
    with pytest.raises(ValueError, match="beam search"):
        generation_options({"num_beams": 4}, 32, 0)
    with pytest.raises(ValueError, match="top_p"):
        generation_options({"temperature": 1.0, "top_p": 2.0}, 32, 0)


def test_sampling_checks_and_requests(tmp_path):
    assert Sampling().num_frames == 128
    with pytest.raises(ValueError, match="not both"):
        Sampling(num_frames=8, fps=1.0)
    with pytest.raises(ValueError):
        Sampling(compression_ratio=3)
    assert Sampling(compression_ratio=[2, 4]).compression_ratio == (2, 4)
    with pytest.raises(FileNotFoundError, match="video not found"):
        Sampling().request([str(tmp_path / "missing.mp4")])
    assert Sampling().request([]) is None
    image = tmp_path / "a.png"
    assert Sampling().request([str(image), str(image)]).images == [str(image), str(image)]
