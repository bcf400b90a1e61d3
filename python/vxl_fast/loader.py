"""Find a checkpoint folder and read its safetensors weights (mmap, straight to the device); or build
the random stand-ins of a checkpoint in memory (:func:`random_model`, :func:`tiny_tokenizer`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open

import numpy as np

from .config import VideoXLConfig
from .errors import CheckpointError
from .models.videoxl import VideoXLModel, set_parameters


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A local checkpoint folder for ``path``; a hub repo id is downloaded when the hub is reachable."""
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise CheckpointError(f"missing checkpoint file: {local / 'config.json'}")
        return local
    name = str(path)
    if local.exists():
        raise CheckpointError(f"checkpoint path {name} is a file, expected a folder")
    looks_like_repo = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if not looks_like_repo:
        raise CheckpointError(f"checkpoint folder not found: {name}")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise CheckpointError(
            f"checkpoint folder not found: {name} (and huggingface_hub is not installed to "
            "download it as a hub repo id)") from None
    try:
        return Path(snapshot_download(name, allow_patterns=[
            "*.json", "*.safetensors", "*.txt", "*/config.json", "*/preprocessor_config.json"]))
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"checkpoint folder not found: {name}; it looks like a Hugging Face hub id but the hub "
            "cannot be reached (offline?) and it is not in the local hub cache. Download it on a "
            "machine with network access and pass the local folder.") from None
    except (HfHubHTTPError, OSError) as e:
        raise CheckpointError(f"could not download {name} from the Hugging Face hub: {e}") from None


class WeightReader:
    """Read tensors by checkpoint name from single-file or sharded safetensors.

    Tensors are memory-mapped and materialised one at a time on ``device`` in ``dtype``.
    """

    def __init__(self, folder: Path, device: torch.device):
        self.folder = folder
        self.device = device
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text()).get("weight_map")
            except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{index} is not a valid weight index (JSON with 'weight_map'): {e}") from None
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index} has no 'weight_map'")
        elif (folder / "model.safetensors").is_file():
            weight_map = None
        else:
            raise CheckpointError(
                f"missing checkpoint file: {folder} has neither model.safetensors nor "
                "model.safetensors.index.json")
        self._handles: dict[str, object] = {}
        if weight_map is None:
            h = self._open("model.safetensors")
            weight_map = {k: "model.safetensors" for k in h.keys()}
        self.weight_map: dict[str, str] = weight_map

    def _open(self, filename: str):
        if filename not in self._handles:
            f = self.folder / filename
            if not f.is_file():
                raise CheckpointError(f"missing checkpoint file: {f} (named in the weight index)")
            # NOTE: safetensors cannot mmap straight into CUDA memory on every version, so tensors
            # are opened on the CPU (mmap, no copy) and moved by `get`.
            try:
                self._handles[filename] = safe_open(str(f), framework="pt", device="cpu")
            except Exception as e:  # safetensors reports truncation/corruption with its own types
                raise CheckpointError(f"checkpoint file {f} is truncated or corrupt: {e}") from None
        return self._handles[filename]

    def __contains__(self, name: str) -> bool:
        return name in self.weight_map

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if name not in self.weight_map:
            raise CheckpointError(f"checkpoint is missing the weight {name!r}")
        filename = self.weight_map[name]
        try:
            t = self._open(filename).get_tensor(name)
        except CheckpointError:
            raise
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read weight {name!r} from {filename}: {e}") from None
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(
                f"weight {name!r} has shape {list(t.shape)}, expected {list(shape)} from config.json")
        if not t.is_floating_point():
            raise CheckpointError(f"weight {name!r} has dtype {t.dtype}, expected a float tensor")
        return t.to(device=self.device, dtype=dtype)

    def close(self) -> None:
        self._handles.clear()


def load_module_weights(module: torch.nn.Module, reader: WeightReader, dtype: torch.dtype,
                        sources, progress: bool = False) -> None:
    """Fill every parameter of ``module`` (built on the meta device) from the checkpoint.

    ``sources(param_name)`` lists the checkpoint tensors that make up a parameter as
    ``(name, expected_shape)`` pairs; several are concatenated along dim 0 (fused projections).
    ``progress``: a bar over the parameters (on stderr).
    """
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(1 for _ in module.parameters()), unit="tensor", desc="loading weights",
                   dynamic_ncols=True, leave=False)

    def make(name: str, _) -> torch.Tensor:
        parts = [reader.get(src, shape, dtype) for src, shape in sources(name)]
        if bar is not None:
            bar.update(1)
        return parts[0] if len(parts) == 1 else torch.cat(parts)
    try:
        set_parameters(module, make)
    finally:
        if bar is not None:
            bar.close()


def load_model(folder: Path, cfg: VideoXLConfig, device: torch.device, dtype: torch.dtype,
               progress: bool = False) -> VideoXLModel:
    """The Video-XL modules of a checkpoint folder, weights read straight onto ``device``
    (``progress``: a bar on stderr)."""
    with torch.device("meta"):
        model = VideoXLModel(cfg)
    reader = WeightReader(folder, device)
    try:
        load_module_weights(model, reader, dtype, model.checkpoint_sources, progress)
    finally:
        reader.close()
    return model.eval()


_PROBE = "<|im_start|>user\nWhat happens in the video?<|im_end|>"


def load_tokenizer(folder: Path):
    """The checkpoint's tokenizer (``CheckpointError`` naming the folder when it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        ids = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
        back = tokenizer.decode(ids)
    except Exception as e:  # transformers reports missing or broken files with many types
        raise CheckpointError(f"cannot load the tokenizer from {folder}: {e}") from None
    if back != _PROBE:
        raise CheckpointError(f"cannot load the tokenizer from {folder}: it does not reproduce text "
                              f"({_PROBE!r} came back as {back!r}); are its vocab/merges files missing?")
    return tokenizer


def random_model(config: VideoXLConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> VideoXLModel:
    """The Video-XL modules of ``config`` with random weights built directly on ``device`` (no CPU init)."""
    with torch.device("meta"):
        model = VideoXLModel(config)
    model.init_random(device, dtype, seed)
    return model.eval()


def parameter_count(config: VideoXLConfig) -> int:
    """The number of weights of the Video-XL modules of ``config`` (counted on the meta device)."""
    with torch.device("meta"):
        return sum(p.numel() for p in VideoXLModel(config).parameters())


SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Qwen2's pre-tokenisation pattern.
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_CORPUS_WORDS = (
    "the a man woman person people walks runs sits stands holds picks up cup ball car dog cat "
    "room street kitchen table chair door window video frame scene moment start end first "
    "then next after before during while what who where when why how many which color red "
    "green blue yellow white black left right top bottom moving bar square circle appears "
    "question answer describe summarize main events happening is are was were does do in on "
    "at of to with and or but this that it he she they one two three four five six seven eight "
    "nine ten minutes seconds hour long short fast slow bright dark light shows shown camera"
).split()


def tiny_bpe(vocab_size: int = 1000):
    """A small Qwen2-style byte-level BPE (a ``tokenizers.Tokenizer``) trained in memory on a fixed
    corpus, deterministically; ids ``n..n+2`` after its ``n`` text tokens are :data:`SPECIAL_TOKENS`."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(_CORPUS_WORDS, 12)) + "." for _ in range(4000)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def tiny_tokenizer(vocab_size: int = 1000):
    """:func:`tiny_bpe` as a transformers tokenizer with Qwen2's special tokens: the tokenizer of
    the demo checkpoint, built without files (for ``VideoXL.random`` and memory planning)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tiny_bpe(vocab_size), eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"], clean_up_tokenization_spaces=False,
        model_max_length=32768)
