"""Every entry point (Python, ``vxl-fast``, the server's options, the batch runner) has one set of
defaults and one set of checks; the command line runs its checks before it loads a model, and says
what the API says for the same input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CUDA_AVAILABLE, GOLDEN, REPO, load_model, needs_av
from vxl_fast import VideoMemory, VideoXL, __version__, cli
from vxl_fast.device import physical_cores, set_threads
from vxl_fast.terminal import busy_hint
from vxl_fast.distributed.batch import BatchOptions, BatchSummary
from vxl_fast.distributed.requests import parse_requests
from vxl_fast.limits import DEFAULT_FRAMES
from vxl_fast.options import DEFAULT_MAX_NEW_TOKENS, GenerationOptions, _warn_greedy
from vxl_fast.runtime import omp_threads
from vxl_fast.server.options import ServeOptions
from vxl_fast.terminal import printable
from vxl_fast.video.reader import in_words

CKPT = GOLDEN / "tiny-videoxl"
VIDEO = GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4"
FRAMES = torch.randint(0, 256, (4, 48, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
THREADS = str(torch.get_num_threads())  # the CLI runs in this process: leave its thread count as it is


@pytest.fixture
def no_load(monkeypatch):
    """Loading a model fails the test: the command must have stopped before."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(VideoXL, "from_pretrained", refuse)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _api_error(call) -> str:
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as e:
        call()
    return str(e.value)


@pytest.fixture(scope="module")
def memory_file(tmp_path_factory):
    """A memory encoded at ratio 16 by the tiny checkpoint (float32)."""
    path = tmp_path_factory.mktemp("memory") / "clip.vxl"
    load_model(CKPT).encode(frames=FRAMES, compression_ratio=16).save(path)
    return path


def test_one_set_of_defaults():
    parser = cli._parser()
    ask = parser.parse_args(["ask", "clip.mp4", "q"])
    assert ask.max_new_tokens == parser.parse_args(["chat", "clip.mp4"]).max_new_tokens == DEFAULT_MAX_NEW_TOKENS
    assert GenerationOptions().max_new_tokens == ServeOptions().max_tokens == DEFAULT_MAX_NEW_TOKENS
    assert cli._request(ask, "clip.mp4").num_frames == DEFAULT_FRAMES
    assert ServeOptions().default_frames == BatchOptions().default_frames == DEFAULT_FRAMES == 128
    assert parser.parse_args(["serve"]).default_frames == parser.parse_args(["batch", "r", "-o", "a"]).frames == 128
    (line,) = parse_requests([(1, '{"id": 1, "video": "clip.mp4", "question": "q"}')], base=REPO,
                             default_frames=DEFAULT_FRAMES)
    assert line.visual.num_frames == DEFAULT_FRAMES
    # the Python API: a video file given neither num_frames nor fps samples the same 128 frames
    request = VideoXL.encode(SimpleNamespace(encode_request=lambda r, o, c: r), "clip.mp4")
    assert request.num_frames == DEFAULT_FRAMES
    assert VideoXL.encode(SimpleNamespace(encode_request=lambda r, o, c: r), "clip.mp4", fps=1.0).num_frames is None


@needs_av
def test_demo_video_has_frames_for_the_defaults(tmp_path):
    from vxl_fast.testing.tiny import write_sample_video
    from vxl_fast.video.reader import probe

    assert probe(write_sample_video(tmp_path / "sample.mp4")).frames >= DEFAULT_FRAMES


def _cases(tmp_path, memory_file):
    """name → (CLI arguments, the API call that gets the same input)."""
    model = load_model(CKPT)
    missing, broken, picture = tmp_path / "missing.mp4", tmp_path / "broken.mp4", tmp_path / "missing.png"
    broken.write_bytes(b"this is not a video")
    return {
        "missing video": (["ask", missing, "q"], lambda: model.generate(video=str(missing), prompt="q")),
        "broken video": (["ask", broken, "q"], lambda: model.generate(video=str(broken), prompt="q")),
        "missing image": (["ask", picture, "q"], lambda: model.generate(images=str(picture), prompt="q")),
        "ratio": (["ask", VIDEO, "q", "--ratio", 5],
                  lambda: model.generate(video=str(VIDEO), prompt="q", compression_ratio=5)),
        "frames": (["ask", VIDEO, "q", "--frames", 0],
                   lambda: model.generate(video=str(VIDEO), num_frames=0, prompt="q")),
        "budget": (["ask", VIDEO, "q", "--max-new-tokens", 40000],
                   lambda: model.generate(frames=FRAMES, prompt="q", max_new_tokens=40000)),
        "memory ratio": (["ask", "--memory", memory_file, "q", "--ratio", 8],
                         lambda: VideoMemory.load(memory_file, model, compression_ratio=8)),
    }


@needs_av
@pytest.mark.parametrize("name", ["missing video", "broken video", "missing image", "ratio", "frames", "budget",
                                  "memory ratio"])
def test_cli_checks_before_loading_and_says_what_the_api_says(name, tmp_path, memory_file, capsys, monkeypatch):
    argv, api_call = _cases(tmp_path, memory_file)[name]
    api_message = _api_error(api_call)
    monkeypatch.setattr(VideoXL, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = _cli(capsys, *argv, "--model", CKPT)
    assert code == 2 and err == f"vxl-fast: error: {api_message}\n"


def test_the_messages_say_what_is_wrong(tmp_path, memory_file, capsys, no_load):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    assert _cli(capsys, "ask", broken, "q", "--model", CKPT)[2] == (
        f"vxl-fast: error: cannot read video {broken}: no container it could be read as (its data is not a video file)\n")
    assert "40000 exceed the model's context of 32768 tokens" in _cli(
        capsys, "ask", VIDEO, "q", "--max-new-tokens", 40000, "--model", CKPT)[2]
    assert _cli(capsys, "ask", "--memory", memory_file, "q", "--model", CKPT, "--dtype", "bfloat16")[2] == (
        f"vxl-fast: error: memory file {memory_file} holds torch.float32 K/V but the model runs in torch.bfloat16; "
        "load the model with that dtype\n")
    assert _cli(capsys, "encode", VIDEO, "-o", tmp_path / "x.vxl", "--model", tmp_path / "nope")[2] == (
        f"vxl-fast: error: checkpoint folder not found: {tmp_path / 'nope'}\n")


def test_a_port_in_use_is_named_before_loading(capsys, no_load):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = _cli(capsys, "serve", "--model", CKPT, "--port", port)
    assert code == 2 and err == (f"vxl-fast: error: cannot listen on 127.0.0.1:{port}: address already in use "
                                 "(another server there? choose another --port)\n")


def test_ffmpeg_errors_in_words():
    class FFmpegError(OSError):
        pass
    assert in_words(FFmpegError(1094995529, "Invalid data found when processing input")) == (
        "invalid data found when processing input")
    assert in_words(ValueError("[Errno -11] Resource temporarily unavailable")) == "resource temporarily unavailable"


def _images(tmp_path, count: int) -> list[str]:
    rng = np.random.default_rng(3)
    paths = [tmp_path / f"p{i}.png" for i in range(count)]
    for p in paths:
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(p)
    return [str(p) for p in paths]


def test_one_image_takes_the_single_image_path_several_the_multi_image_one(tmp_path, capsys):
    model = load_model(CKPT)
    one, two = _images(tmp_path, 1), _images(tmp_path, 2)
    for paths, images in ((one, one[0]), (two, two)):
        code, out, err = _cli(capsys, "ask", *paths, "What is it?", "--model", CKPT, "--max-new-tokens", 4,
                              "--json", "--threads", THREADS)
        assert code == 0, err
        want = model.generate(images=images, prompt="What is it?", max_new_tokens=4)
        got = json.loads(out)
        assert got["token_ids"] == want.token_ids and got["memory"]["frames"] == model.encode(images=images).frames
        assert "has only 1 frames" not in err


def test_temperature_without_do_sample_is_greedy_and_warns_once():
    model = load_model(CKPT)
    _warn_greedy.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warm = model.generate(frames=FRAMES, prompt="q", max_new_tokens=5, temperature=0.7)
        again = model.generate(frames=FRAMES, prompt="q", max_new_tokens=5, temperature=0.7)
    greedy = model.generate(frames=FRAMES, prompt="q", max_new_tokens=5)
    assert warm.token_ids == again.token_ids == greedy.token_ids
    messages = [str(w.message) for w in caught if "do_sample" in str(w.message)]
    assert messages == ["temperature is set but do_sample is False: decoding is greedy and ignores it; "
                        "pass do_sample=True to sample"]


def test_help_shows_defaults_and_the_version(capsys):
    parser = cli._parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for name, text in (("serve", "(default: 8000)"), ("serve", "(default: 1024)"), ("batch", "(default: 128)"),
                       ("ask", "(default: 1024)"), ("demo", "(default: 64)"), ("encode", "(default: 128 unless --fps")):
        assert text in " ".join(sub[name].format_help().split()), name
    for name in ("ask", "chat", "encode", "demo", "serve"):
        assert "--threads" in sub[name].format_help(), name
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"vxl-fast {__version__}\n"


def test_warnings_name_the_program_not_a_file(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_info", lambda args: warnings.warn("careful") or 0)
    assert cli.main(["info", "released"]) == 0
    assert capsys.readouterr().err == "vxl-fast: warning: careful\n"


def test_answers_print_safely():
    assert printable("a\x1b[31mb\x07\ufffd\u200bc\n\td é 日本") == "a\\x1b[31mb\\x07\\ufffd\\u200bc\n\td é 日本"


def test_threads_default_and_option():
    before = torch.get_num_threads()
    try:
        assert set_threads(None, None) == physical_cores() == torch.get_num_threads()
        assert set_threads(None, 1) == 1 == torch.get_num_threads()  # OMP_NUM_THREADS=1
        assert set_threads(2, 1) == 2 == torch.get_num_threads()  # --threads 2 wins
        with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
    assert omp_threads({"OMP_NUM_THREADS": "4"}) == 4
    assert omp_threads({"OMP_NUM_THREADS": "0"}) is omp_threads({}) is omp_threads({"OMP_NUM_THREADS": "x"}) is None


def test_a_busy_machine_suggests_fewer_threads():
    assert busy_hint(2, 8.7, 2) == ("vxl-fast: the CPUs are busy (load 8.7 on 2 cores): --threads 1 may run "
                                         "many times faster")
    assert busy_hint(2, 1.5, 2) is busy_hint(1, 8.7, 2) is None


def test_batch_summary_lists_the_failed_ids():
    summary = BatchSummary(30, 0, 5, 25, 2, 10.0, "a.jsonl", failed_ids=[f"r{i}" for i in range(25)])
    assert str(summary).endswith("; failed: " + ", ".join(f"r{i}" for i in range(20)) +
                                 " and 5 more (their errors are in a.jsonl)")
    assert "failed:" not in str(BatchSummary(1, 0, 1, 0, 1, 1.0, "a.jsonl"))


@pytest.mark.skipif(CUDA_AVAILABLE, reason="the GPU test runs here")
def test_gpu_skips_are_summarised_in_one_line():
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/test_device_rule.py", "-k", "gpu_test_gets", "-q",
                        "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "1 skipped: they need a CUDA GPU and none is usable here" in r.stdout, r.stdout + r.stderr


def test_readme_installs_the_extras_as_ci_runs_them():
    readme = (REPO / "README.md").read_text()
    lines = {'pip install --no-build-isolation ".[serve]"', 'pip install --no-build-isolation ".[ray]"'}
    assert lines <= {line.split("  #")[0].strip() for line in readme.splitlines()}
    assert '"vxl_fast[' not in readme and "'vxl_fast[" not in readme  # not on PyPI
    assert "README's extras lines" in (REPO / ".ci" / "run").read_text()


def test_loading_shows_progress_when_asked(capsys):
    VideoXL.from_pretrained(CKPT, device="cpu", dtype=torch.float32, progress=True)
    err = capsys.readouterr().err
    assert "loading weights" in err and "tensor" in err
    VideoXL.from_pretrained(CKPT, device="cpu", dtype=torch.float32)
    assert capsys.readouterr().err == ""


@needs_av
def test_the_batch_runner_says_what_the_api_says(tmp_path, memory_file):
    """The same input in a batch request line: checked lines name the line, files fail in their record."""
    from vxl_fast.distributed.requests import group_requests
    from vxl_fast.distributed.worker import BatchWorker

    cases = _cases(tmp_path, memory_file)
    worker = BatchWorker(str(CKPT), "cpu", "float32", "w")
    for name, row in (("missing video", {"video": str(tmp_path / "missing.mp4")}),
                      ("broken video", {"video": str(tmp_path / "broken.mp4")}),
                      ("missing image", {"image": str(tmp_path / "missing.png")})):
        (group,) = group_requests(parse_requests([(1, {"id": 1, **row, "question": "q"})], base=tmp_path,
                                                 default_frames=DEFAULT_FRAMES))
        (record,) = worker.run(group)
        assert record["error"]["message"] == _api_error(cases[name][1]), name
    for name, row in (("ratio", {"compression_ratio": 5}), ("frames", {"num_frames": 0})):
        with pytest.raises(ValueError) as e:
            parse_requests([(1, {"id": 1, "video": str(VIDEO), "question": "q", **row})], base=tmp_path)
        assert str(e.value).endswith("line 1: " + _api_error(cases[name][1])), name


def test_third_party_deprecations_are_filtered_ours_shown(tmp_path):
    (tmp_path / "test_w.py").write_text(
        "import warnings\n\n\ndef test_w():\n"
        "    warnings.warn_explicit('theirs', DeprecationWarning, 'x.py', 1, module='ray.serve')\n"
        "    warnings.warn_explicit('their future', FutureWarning, 'x.py', 2, module='transformers.utils')\n"
        "    warnings.warn_explicit('ours', DeprecationWarning, 'x.py', 3, module='vxl_fast.api')\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
                        str(tmp_path / "test_w.py"), "-q", "-p", "no:cacheprovider"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "DeprecationWarning: ours" in r.stdout, r.stdout + r.stderr
    assert "theirs" not in r.stdout and "their future" not in r.stdout
