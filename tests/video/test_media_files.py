"""Media opened once and confined (``video/files.py``), only self-contained containers demuxed
(``reader.FORMATS``, nested opens refused), and the budgets of ``Limits`` checked from headers
before anything is decoded."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="needs PyAV")

from conftest import GOLDEN  # noqa: E402
from hostile_media import concat_list, hls_playlist, png_claiming, ts_copy, video  # noqa: E402
from vxl_fast.limits import Limits  # noqa: E402
from vxl_fast.video import load_video, open_video, reader  # noqa: E402
from vxl_fast.video.files import MediaFile, OutsideRoot  # noqa: E402
from vxl_fast.video.request import VisualRequest  # noqa: E402

VIDEO = GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``inside/`` (the allowed folder) and ``outside/`` with a segment, a video and a 4096² video."""
    root = tmp_path_factory.mktemp("tree")
    inside, outside = root / "inside", root / "outside"
    inside.mkdir(), outside.mkdir()
    ts_copy(VIDEO, outside / "segment.ts")
    (outside / "secret.mp4").write_bytes(VIDEO.read_bytes())
    hls_playlist(inside / "list.m3u8", outside / "segment.ts")
    concat_list(inside / "list.txt", outside / "secret.mp4")
    video(inside / "huge.mp4", 4096, 4096)
    (inside / "sub").mkdir()
    video(inside / "sub" / "clip.mp4", 64, 48, frames=4, value=10)
    (outside / "sub").mkdir()
    video(outside / "sub" / "clip.mp4", 64, 48, frames=4, value=200)
    return inside, outside


@pytest.mark.parametrize("name", ["list.m3u8", "list.txt"])
def test_playlists_and_lists_are_refused(tree, name, monkeypatch):
    inside, _ = tree
    if name == "list.m3u8":  # the attack works on plain FFmpeg: it decodes the segment outside
        with av.open(str(inside / name)) as container:
            assert container.format.name == "hls" and sum(1 for _ in container.decode(video=0)) == 500
    with pytest.raises(ValueError, match="not a video container that holds its own media"):
        load_video(str(inside / name), num_frames=4)
    # the second guard alone: with the demuxer allowed, every nested open is refused
    monkeypatch.setattr(reader, "FORMATS", reader.FORMATS + ("hls", "concat"))
    with pytest.raises(ValueError, match="refers to another file or URL|Operation not permitted"):
        load_video(MediaFile.open(inside / name), num_frames=4)  # named .m3u8, so that FFmpeg probes HLS


def test_an_image_is_not_a_video(tmp_path):
    (tmp_path / "frame.png").write_bytes(png_claiming(8, 8))
    with pytest.raises(ValueError, match="not a video container"):
        reader.probe(MediaFile.open(tmp_path / "frame.png", "the video_url"))


def test_open_inside_never_follows_a_symlink(tree):
    inside, outside = tree
    with MediaFile.inside(inside, "sub/clip.mp4", "v") as f:
        assert f.where() == str((inside / "sub" / "clip.mp4").resolve())
    link = inside / "link"
    os.symlink(outside / "sub", link)
    try:
        with pytest.raises(OutsideRoot):
            MediaFile.inside(inside, "link/clip.mp4", "v")
        os.symlink(outside / "secret.mp4", inside / "file-link.mp4")
        with pytest.raises(OutsideRoot):
            MediaFile.inside(inside, "file-link.mp4", "v")
        with pytest.raises(OutsideRoot):
            MediaFile.inside(inside, "../outside/secret.mp4", "v")
    finally:
        os.unlink(link)
        os.unlink(inside / "file-link.mp4")


def test_a_path_swapped_after_the_open_is_never_read(tree, tmp_path):
    """The folder ``sub`` is replaced by a symlink to an outside folder after the file was opened
    and before it is decoded: the open file (inside) is what is decoded."""
    inside, outside = tree
    work = tmp_path / "inside"
    work.mkdir()
    (work / "sub").mkdir()
    (work / "sub" / "clip.mp4").write_bytes((inside / "sub" / "clip.mp4").read_bytes())
    file = MediaFile.inside(work, "sub/clip.mp4", "the video_url")
    os.rename(work / "sub", work / "old")
    os.symlink(outside / "sub", work / "sub")
    frames = load_video(file, num_frames=2, decoder="cpu").frames
    assert int(frames.float().mean()) < 50  # the inside video's value 10, not the outside's 200
    assert int(load_video(str(work / "sub" / "clip.mp4"), num_frames=2).frames.float().mean()) > 150


def test_data_in_memory_reads_back(tmp_path):
    data = VIDEO.read_bytes()
    with MediaFile.from_bytes(data, "the video_url") as f:
        assert f.reader().read() == data and f.size == len(data) and not f.changed()
        if hasattr(os, "memfd_create"):
            with pytest.raises(PermissionError):
                os.write(f.fd, b"x")  # sealed
        direct = load_video(str(VIDEO), num_frames=3).frames
        assert torch.equal(load_video(f, num_frames=3).frames, direct)


def test_a_fifo_is_not_opened_as_media(tmp_path):
    os.mkfifo(tmp_path / "pipe.mp4")
    with pytest.raises(ValueError, match="not a regular file"):
        MediaFile.inside(tmp_path, "pipe.mp4", "the video_url")


# ---- budgets, from the headers, before decoding ------------------------------------------------

def _count_decoding(monkeypatch) -> list:
    calls = []
    real = reader._decode

    def counted(*args, **kw):
        calls.append(1)
        return real(*args, **kw)
    monkeypatch.setattr(reader, "_decode", counted)
    return calls


def test_frames_over_the_pixel_budget_are_refused_from_the_header(tree, monkeypatch):
    inside, _ = tree
    calls = _count_decoding(monkeypatch)
    with pytest.raises(ValueError, match=r"a frame is 4096x4096 = 16777216 pixels, over the limit of 8847360 pixels"):
        load_video(str(inside / "huge.mp4"), num_frames=2)
    with pytest.raises(ValueError, match="over the limit of 1000 pixels"):
        load_video(str(VIDEO), num_frames=2, limits=Limits(max_pixels=1000))
    assert calls == []
    frames = load_video(str(inside / "huge.mp4"), num_frames=1, limits=Limits(max_pixels=4096 * 4096)).frames
    assert frames.shape == (1, 4096, 4096, 3) and calls == [1]  # raised by the caller: read


def test_image_bombs_are_refused_from_the_header(tmp_path, monkeypatch):
    from PIL import ImageFile

    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(1))
    (tmp_path / "bomb.png").write_bytes(png_claiming(20000, 20000))
    (tmp_path / "big.png").write_bytes(png_claiming(5000, 5000))
    assert (tmp_path / "bomb.png").stat().st_size < 1000
    with pytest.raises(ValueError, match="bomb.png is over the limit of 8847360 pixels"):
        load_video(str(tmp_path / "bomb.png"))
    with pytest.raises(ValueError, match=r"image .*big.png is 5000x5000 = 25000000 pixels, over the limit"):
        load_video(str(tmp_path / "big.png"))
    from vxl_fast.config import VideoXLConfig
    from vxl_fast.video.inputs import visual_input

    cfg = VideoXLConfig.released()
    for images in ([str(tmp_path / "big.png")], [np.zeros((8, 8, 3), np.uint8), str(tmp_path / "big.png")]):
        with pytest.raises(ValueError, match="over the limit of 8847360 pixels"):
            visual_input(cfg, VisualRequest(images=images))
    assert loads == []


def test_frame_and_image_counts():
    with pytest.raises(ValueError, match=r"images=: 100 images in one request, over the limit of 64 \(max_images\)"):
        VisualRequest(images=[np.zeros((4, 4, 3), np.uint8)] * 100)
    with pytest.raises(ValueError, match=r"num_frames=3000: 3000 frames in one request, over the limit of 2048"):
        VisualRequest(video="v.mp4", num_frames=3000)
    VisualRequest(video="v.mp4", num_frames=3000, limits=Limits(max_frames=4096))
    assert Limits(max_frames=10).max_images == 10
    with pytest.raises(ValueError, match=r"500 frames in one request, over the limit of 100"):
        open_video(str(VIDEO), fps=25, limits=Limits(max_frames=100))


def test_decoded_bytes_in_flight_shrink_the_chunks():
    frame = 320 * 240 * 3
    reference = load_video(str(VIDEO), num_frames=12).frames
    tight = Limits(max_decoded_bytes=frame * 10)  # 5 chunks alive at once (prefetch 2): 2 frames each
    sizes = [chunk.shape[0] for chunk, _ in open_video(str(VIDEO), num_frames=12, limits=tight).chunks(8, pin=False)]
    assert sizes == [2] * 6
    assert torch.equal(torch.cat([c for c, _ in open_video(str(VIDEO), num_frames=12, limits=tight).chunks(8)]),
                       reference)
    with pytest.raises(ValueError, match=r"max_decoded_bytes"):
        next(open_video(str(VIDEO), num_frames=12, limits=Limits(max_decoded_bytes=frame * 4)).chunks(8))


def test_images_are_decoded_a_piece_at_a_time(tmp_path, monkeypatch):
    from PIL import Image

    from vxl_fast.config import VideoXLConfig
    from vxl_fast.video import inputs

    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((100, 100, 3), i, np.uint8)).save(paths[-1])
    read = []
    real = inputs.read_frames
    monkeypatch.setattr(inputs, "read_frames", lambda images, *a: read.append(len(images)) or real(images, *a))
    visual = inputs.visual_input(VideoXLConfig.released(), VisualRequest(
        images=[str(p) for p in paths], limits=Limits(max_decoded_bytes=2 * 100 * 100 * 3 * 2)))
    assert read == []  # planning decodes nothing
    counts = []
    for piece in visual.sources(64):
        counts.append(piece.count)
        assert read[-1] == piece.count and sum(read) == sum(counts)
    assert counts == [2, 2, 2]
    with pytest.raises(ValueError, match=r"images\[0\]: .*max_decoded_bytes"):
        next(inputs.visual_input(VideoXLConfig.released(), VisualRequest(
            images=[str(p) for p in paths], limits=Limits(max_decoded_bytes=100))).sources(64))


def test_limits_must_be_limits():
    with pytest.raises(TypeError, match="limits must be a vxl_fast.limits.Limits"):
        VisualRequest(video="v.mp4", num_frames=2, limits={"max_pixels": 1})


def test_a_frame_table_over_the_limit_is_refused_while_it_is_read():
    frames = reader.probe(str(VIDEO)).frames
    assert reader.probe(str(VIDEO), max_frames=frames).frames == frames
    with pytest.raises(ValueError, match=f"more than {frames - 1} frames \\(max_video_frames\\)"):
        load_video(str(VIDEO), num_frames=2, limits=Limits(max_video_frames=frames - 1))
