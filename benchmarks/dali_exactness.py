"""DALI's decoders against the CPU path, pixel for pixel: max and mean absolute difference and the
share of pixels that differ (any channel), per file. Images: DALI's image decoder (``cpu``, or
``mixed`` with ``--mixed`` on a GPU) against Pillow (``read_image``) on JPEGs and PNGs of every
common kind and a 1080p JPEG; video: ``fn.decoders.video`` against PyAV's rgb24 on VP9 and MJPEG
(the codecs DALI's CPU variant takes; H.264/HEVC with ``--mixed``); and the golden video case's
sampled frames, transcoded to VP9 (H.264 with ``--mixed``), read by PyAV and by DALI: how far the
visual tokens move and whether the greedy answer stays.

    python benchmarks/dali_exactness.py OUT.json [--mixed]
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vxl_fast.video import dali, load_video
from vxl_fast.video.reader import probe
from vxl_fast.video.source import read_image


def _stats(got: np.ndarray, want: np.ndarray) -> dict:
    if got.shape != want.shape:
        return {"shape": list(got.shape), "expected": list(want.shape)}
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    return {"max": int(diff.max()), "mean": round(float(diff.mean()), 4),
            "share_differing": round(float((diff.max(-1) > 0).mean()), 4)}


def _images(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    h, w = 181, 243
    yy, xx = np.mgrid[0:h, 0:w]
    im = Image.fromarray((np.stack([(xx * 2) % 256, (yy * 3) % 256, (xx + yy) % 256], -1)
                          + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8))
    big = np.stack(np.mgrid[0:1080, 0:1920], -1).sum(-1, keepdims=True) % 256 + rng.integers(0, 24, (1080, 1920, 3))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90°": neither Pillow nor vxl_fast's DALI reader applies it
    saves = {"q90.jpg": (im, dict(quality=90)), "exif-rotated.jpg": (im, dict(exif=exif)),
             "q75-444.jpg": (im, dict(quality=75, subsampling=0)),
             "q95-422.jpg": (im, dict(quality=95, subsampling=1)), "progressive.jpg": (im, dict(progressive=True)),
             "gray.jpg": (im.convert("L"), {}), "cmyk.jpg": (im.convert("CMYK"), {}),
             "1080p-q90.jpg": (Image.fromarray(big.clip(0, 255).astype(np.uint8)), dict(quality=90)),
             "rgb.png": (im, {}), "gray.png": (im.convert("L"), {}), "palette.png": (im.convert("P"), {}),
             "rgba.png": (Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA"), {}),
             "16bit.png": (Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)), {}),
             "rgb.bmp": (im, {}), "lossy.webp": (im, dict(quality=80))}
    out = {}
    for name, (image, kw) in saves.items():
        image.save(folder / name, **kw)
        out[name] = folder / name
    return out


def _videos(folder: Path, mixed: bool) -> dict[str, Path]:
    import av

    kinds = [("vp9", "libvpx-vp9", "yuv420p", "webm"), ("mjpeg", "mjpeg", "yuvj420p", "avi")]
    if mixed:
        kinds += [("h264", "libx264", "yuv420p", "mp4"), ("hevc", "libx265", "yuv420p", "mp4")]
    rng = np.random.default_rng(4)
    texture = rng.integers(0, 24, (240, 320, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:240, 0:320]
    out = {}
    for name, codec, pix_fmt, suffix in kinds:
        path = folder / f"{name}.{suffix}"
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = 320, 240, pix_fmt
            for t in range(20):
                img = np.stack([(xx + 3 * t) % 200, (yy + t) % 200, (xx + yy + 5 * t) % 200], -1).astype(np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img + texture, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        out[name] = path
    return out


def _answers(folder: Path, on: str) -> dict:
    """The golden video case on a transcode of its video (VP9 on the CPU, H.264 on the GPU)."""
    import av

    from vxl_fast import VideoXL
    from vxl_fast.engine import compress
    from vxl_fast.video.inputs import visual_input
    from vxl_fast.video.request import VisualRequest

    golden = Path(__file__).resolve().parents[1] / "tests" / "golden"
    meta = json.loads((golden / "cases" / "video_testsrc2_k24_r8.json").read_text())
    codec, path = ("libx264", folder / "golden.mp4") if on == "mixed" else ("libvpx-vp9", folder / "golden.webm")
    with av.open(str(golden / "cases" / meta["video_file"])) as src, av.open(str(path), "w") as dst:
        options = {"crf": "18"} if on == "mixed" else {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        stream = dst.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for frame in src.decode(video=0):
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    model = VideoXL.from_pretrained(golden / "tiny-videoxl", device="cuda" if on == "mixed" else "cpu",
                                    dtype=torch.float32)
    visual = dict(video=str(path), num_frames=meta["max_frames_num"])
    tokens = [compress.visual_tokens(model.runner, visual_input(model.config, VisualRequest(**visual, decoder=d)))
              for d in ("cpu", "dali")]
    ids = [model.generate(**visual, decoder=d, prompt=meta["question"], compression_ratio=meta["compression_ratio"],
                          max_new_tokens=meta["max_new_tokens"]).token_ids for d in ("cpu", "dali")]
    return {"case": meta["name"], "video": path.name,
            "visual_tokens_max_abs_diff": float((tokens[0] - tokens[1]).abs().max()),
            "visual_tokens_max_abs": float(tokens[0].abs().max()), "greedy_ids_equal": ids[0] == ids[1]}


def main(out_path: str, mixed: bool = False) -> dict:
    on = "mixed" if mixed else "cpu"
    reason = dali.unavailable(on)
    if reason is not None:
        raise SystemExit(reason)
    result = {"device": torch.cuda.get_device_name() if mixed else "cpu", "dali_device": on,
              "date": datetime.date.today().isoformat(), "images": {}, "video": {}}
    with tempfile.TemporaryDirectory() as tmp:
        decoder = dali.ImageDecoder(on)
        for name, path in _images(Path(tmp)).items():
            (got,) = decoder.decode([np.fromfile(path, np.uint8)], [name])
            result["images"][name] = _stats(torch.as_tensor(got).cpu().numpy(), read_image(path))
        for name, path in _videos(Path(tmp), mixed).items():
            info = probe(path)
            wanted = list(range(info.frames))
            (_, frames), = dali.DaliVideo(info, on).batches(wanted)
            want = load_video(path, decoder="cpu").frames.numpy()
            result["video"][name] = _stats(frames.cpu().numpy(), want)
        result["golden_video_answer"] = _answers(Path(tmp), on)
    Path(out_path).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], "--mixed" in sys.argv[2:]), indent=1))
