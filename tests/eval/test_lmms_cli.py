"""lmms-eval's own command line runs a local task offline through the ``vxl_fast`` plugin, and its
per-sample answers equal the engine's. Needs lmms-eval (the ``eval`` extra; CI runs it in a venv
of its own, see .ci/run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import vxl_fast
from conftest import GOLDEN, _importable, load_model, needs_av

pytestmark = [needs_av, pytest.mark.skipif(not _importable("lmms_eval"), reason="needs lmms-eval (the eval extra)")]
PACKAGE_ROOT = Path(vxl_fast.__file__).parents[1]  # the child imports the vxl_fast this process does
# an installed vxl_fast is found by the child's own site; its folder is not put on PYTHONPATH, where
# it would shadow the venv's packages (lmms-eval needs the venv's filelock 3, not the one beside vxl_fast)
INSTALLED = PACKAGE_ROOT.name in ("site-packages", "dist-packages")
MODEL_ARGS = "num_frames=10,compression_ratio=4,device=cpu,dtype=float32,max_new_tokens=16"


def _entry_point_path(tmp_path) -> list[str]:
    """Where the ``lmms_eval.models`` entry point comes from: the installed package's, else (a
    checkout run with PYTHONPATH) a metadata folder written here that declares the same one."""
    if any(ep.name == "vxl_fast" for ep in entry_points(group="lmms_eval.models")):
        return []
    info = tmp_path / "entry" / "vxl_fast_checkout-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vxl_fast_checkout\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[lmms_eval.models]\nvxl_fast = vxl_fast.eval.manifest:MANIFEST\n")
    return [str(tmp_path / "entry")]


def _run(tmp_path, tasks, out, *extra):
    path = [*_entry_point_path(tmp_path), "" if INSTALLED else str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "vxl_fast",
           "--model_args", f"pretrained={GOLDEN / 'tiny-videoxl'},{MODEL_ARGS}", "--include_path", str(tasks),
           "--tasks", "vxl_tiny_mc,vxl_tiny_gen", "--output_path", str(out), "--log_samples", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def _outputs(out) -> tuple[dict, dict]:
    (results,) = out.rglob("*_results.json")
    samples = {}
    for task in ("vxl_tiny_mc", "vxl_tiny_gen"):
        (path,) = out.rglob(f"*_samples_{task}.jsonl")
        samples[task] = [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(results.read_text()), samples


def test_lmms_eval_runs_a_local_task_with_the_engines_answers(tmp_path):
    from localtask import write_tasks
    from vxl_fast.eval.scoring import loglikelihood

    tasks, docs = write_tasks(tmp_path / "task")
    r = _run(tmp_path, tasks, tmp_path / "out")
    results, samples = _outputs(tmp_path / "out")
    assert "Error during evaluation" not in r.stderr  # lmms-eval exits 0 even then
    assert set(results["results"]) == {"vxl_tiny_mc", "vxl_tiny_gen"}
    assert results["n-samples"]["vxl_tiny_gen"]["effective"] == len(docs)
    model = load_model(GOLDEN / "tiny-videoxl")
    gen = sorted(samples["vxl_tiny_gen"], key=lambda s: int(s["doc_id"]))
    expected = [model.generate(video=d["video"], num_frames=10, compression_ratio=4, prompt=s["input"],
                               max_new_tokens=6, stop=["\n\n"]).text for d, s in zip(docs, gen)]
    assert [s["filtered_resps"] for s in gen] == expected
    hits = [float(text.strip().upper().startswith(d["answer"])) for d, text in zip(docs, expected)]
    assert results["results"]["vxl_tiny_gen"]["exact_match,none"] == pytest.approx(sum(hits) / len(hits))
    picks = []
    for s in sorted(samples["vxl_tiny_mc"], key=lambda s: int(s["doc_id"])):
        doc = docs[int(s["doc_id"])]
        memory = model.encode(video=doc["video"], num_frames=10, compression_ratio=4)
        logprobs = [loglikelihood(memory, s["input"], f" {chr(65 + i)}")[0] for i in range(len(doc["options"]))]
        assert [float(nll) for nll, _ in s["filtered_resps"]] == pytest.approx([-lp for lp in logprobs], rel=1e-5)
        picks.append(float(chr(65 + logprobs.index(max(logprobs))) == doc["answer"]))
    assert results["results"]["vxl_tiny_mc"]["acc,none"] == pytest.approx(sum(picks) / len(picks))


def test_plugin_multi_round_and_generate_until(tmp_path):
    from lmms_eval.api.instance import Instance

    from localtask import write_video
    from vxl_fast.eval.lmms_plugin import VideoXLLmms, parse_ratio

    assert parse_ratio("8") == 8 and parse_ratio("2/4/8") == [2, 4, 8] and parse_ratio("config") == "config"
    with pytest.raises(ValueError, match="compression_ratio"):
        parse_ratio("2,4")
    video = str(write_video(tmp_path / "v.mp4", seed=3, frames=12))
    lm = VideoXLLmms(pretrained=str(GOLDEN / "tiny-videoxl"), num_frames=10, compression_ratio=4, device="cpu",
                     dtype="float32", max_new_tokens=4)
    lm.task_dict = {"t": {"test": [{"video": video}]}}
    meta = {"task": "t", "doc_id": 0, "repeats": 1}

    def doc_to_text(doc, previous_output, round_idx, previous_round_info):
        if round_idx == 3:
            return [video], None, True, previous_output, previous_round_info
        return [video], f"Round {round_idx}: and then? ({previous_output[-1][:5]})", False, previous_output, None

    visual = lambda doc: [doc["video"]]  # noqa: E731
    multi = Instance("generate_until_multi_round", ("Round 0: what happens?", {"until": ["\n"]}, visual, doc_to_text,
                                                    0, "t", "test"), 0, meta)
    (rounds,) = lm.generate_until_multi_round([multi])
    model = lm.model
    expected, context = [], "Round 0: what happens?"
    for r in range(3):
        expected.append(model.generate(video=video, num_frames=10, compression_ratio=4, prompt=context,
                                       max_new_tokens=4).text)
        context = f"Round {r + 1}: and then? ({expected[-1][:5]})"
    assert rounds == expected
    single = Instance("generate_until", ("Round 0: what happens?", {"max_new_tokens": 4}, visual,
                                         0, "t", "test"), 0, meta)
    assert lm.generate_until([single]) == [expected[0]]
