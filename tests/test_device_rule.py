"""The device rule of conftest.py: a test that is not marked ``gpu`` runs on the CPU in fp32,
whatever the machine has; a GPU test names its device and dtype."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import torch

from conftest import needs_cuda
from vxl_fast.device import resolve_device, resolve_dtype

TESTS = Path(__file__).resolve().parent
BUILDERS = {"from_pretrained", "random", "load_model"}  # VideoXL's constructors, conftest's cached loader
GPU_MARKS = {"needs_cuda", "gpu"}


def test_a_cpu_test_builds_on_the_cpu_even_where_cuda_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    device = resolve_device(None)
    assert device == torch.device("cpu") and resolve_dtype(None, device) == torch.float32
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # the processes a test starts see no GPU


@needs_cuda
def test_a_gpu_test_gets_the_machines_default():
    assert resolve_device(None).type == "cuda" and os.environ.get("CUDA_VISIBLE_DEVICES") != ""


def _marks(decorators: list[ast.expr]) -> set[str]:
    names = set()
    for d in decorators:
        for node in ast.walk(d):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names & GPU_MARKS


def _module_is_gpu(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)
               and _marks([n.value]) for n in tree.body)


def _builds(fn: ast.AST):
    """(call, device expression or None, dtype given) of each model construction in ``fn``, except
    those inside ``pytest.raises`` (they are meant to fail)."""
    raising = {id(c) for w in ast.walk(fn) if isinstance(w, ast.With)
               if any(isinstance(i.context_expr, ast.Call) and getattr(i.context_expr.func, "attr", "") == "raises"
                      for i in w.items) for c in ast.walk(w)}
    for call in ast.walk(fn):
        if not isinstance(call, ast.Call) or id(call) in raising:
            continue
        name = getattr(call.func, "attr", getattr(call.func, "id", None))
        if name not in BUILDERS or (name != "load_model" and getattr(call.func.value, "id", None) != "VideoXL"):
            continue
        kw = {k.arg: k.value for k in call.keywords}
        if name == "load_model":  # conftest's: (path, device="cpu"), always float32
            device = call.args[1] if len(call.args) > 1 else kw.get("device", ast.Constant("cpu"))
            yield call, device, True
        else:
            yield call, kw.get("device"), "dtype" in kw


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    module_gpu = _module_is_gpu(tree)
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.name in BUILDERS:
            continue  # conftest's load_model passes its caller's device on; its callers are checked
        gpu = module_gpu or bool(_marks(fn.decorator_list))
        for call, device, dtype in _builds(fn):
            where = f"{path.name}:{call.lineno} ({fn.name})"
            on_cpu = device is None or (isinstance(device, ast.Constant) and device.value == "cpu")
            if gpu and (device is None or not dtype):
                out.append(f"{where}: a GPU test names its device and dtype")
            elif not gpu and not on_cpu:
                out.append(f"{where}: builds a model off the CPU but is not marked gpu")
    return out


def test_models_are_built_on_the_cpu_unless_in_a_gpu_test():
    found = [v for p in sorted(TESTS.rglob("*.py")) for v in _violations(p)]
    assert not found, "\n".join(found)


def test_the_scan_sees_what_it_must_refuse(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text("from conftest import needs_cuda\n"
                   "def test_a():\n    VideoXL.random(cfg, device='cuda', dtype='bfloat16')\n"
                   "@needs_cuda\ndef test_b():\n    VideoXL.from_pretrained(p)\n"
                   "@needs_cuda\ndef test_c():\n    load_model(p, 'cuda')\n"
                   "def test_d():\n    with pytest.raises(ValueError):\n        VideoXL.from_pretrained(p, device='cuda')\n")
    found = _violations(bad)
    assert [f.split(": ", 1)[1] for f in found] == ["builds a model off the CPU but is not marked gpu",
                                                     "a GPU test names its device and dtype"]
