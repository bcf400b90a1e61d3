"""A tiny local lmms-eval task written by the tests: JSON data, videos made here, a
multiple-choice task (accuracy from log-likelihoods) and a generation task (exact match)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

QUESTIONS = [("What color fills the screen?", ["red", "green", "blue"], "A"),
             ("Is the video bright or dark?", ["bright", "dark"], "B"),
             ("How many objects move?", ["none", "one", "two"], "C")]

UTILS = '''
import string


def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    options = "\\n".join(f"({string.ascii_uppercase[i]}) {o}" for i, o in enumerate(doc["options"]))
    return f"{doc['question']}\\n{options}\\nAnswer with the option's letter."


def doc_to_choice(doc):
    return list(string.ascii_uppercase[:len(doc["options"])])


def doc_to_target(doc):
    return string.ascii_uppercase.index(doc["answer"])


def process_results(doc, results):
    return {"exact_match": float(results[0].strip().upper().startswith(doc["answer"]))}
'''

TEMPLATE = '''task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: {output_type}
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
{extra}
metadata:
  version: 0.0
'''
MC = '''doc_to_target: !function utils.doc_to_target
doc_to_choice: !function utils.doc_to_choice
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true'''
GEN = '''doc_to_target: answer
generation_kwargs:
  max_new_tokens: 6
  temperature: 0
  until: ["\\n\\n"]
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true'''


def write_video(path: Path, seed: int, frames: int = 12, size: int = 64) -> Path:
    """A small H.264 clip of random moving blocks (PyAV)."""
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        for t in range(frames):
            img = np.roll(base, 4 * t, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_tasks(folder: Path, videos: int = 2, seed: int = 0) -> tuple[Path, list[dict]]:
    """Write the data, videos, utils and both tasks' YAML (``vxl_tiny_mc``, ``vxl_tiny_gen``)
    under ``folder``; the task folder and the documents."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = []
    for v in range(videos):
        video = write_video(folder / f"clip{v}.mp4", seed + v)
        for q, (question, options, answer) in enumerate(QUESTIONS[:2 if v else 3]):
            docs.append({"id": f"{v}-{q}", "video": str(video), "question": question, "options": options,
                         "answer": answer})
    data = folder / "data.json"
    data.write_text(json.dumps(docs))
    tasks = folder / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "utils.py").write_text(UTILS)
    for name, kind, extra in (("vxl_tiny_mc", "multiple_choice", MC), ("vxl_tiny_gen", "generate_until", GEN)):
        (tasks / f"{name}.yaml").write_text(TEMPLATE.format(name=name, data=data, output_type=kind, extra=extra))
    return tasks, docs
