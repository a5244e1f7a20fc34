"""Reading diffusers models from local folders: never a download, safetensors only, each config
checked (class, positive sizes, parameter count on the meta device) before anything is allocated.

A folder is what a model's ``save_pretrained`` writes (``config.json`` + :data:`WEIGHTS`), or a
pipeline's (``model_index.json`` naming its parts, one subfolder each: ``unet/`` or
``transformer/``, ``vae/``, ``scheduler/``). diffusers is imported only when a model is built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import SerializationError
from ...limits import MAX_PARAMETERS, MAX_WIDTH
from ...optional import optional_import

#: the one weights file a model is read from (a ``.bin`` is a pickle: never read)
WEIGHTS = "diffusion_pytorch_model.safetensors"
#: the denoisers from_diffusers takes (a DiT saved by older diffusers is a ``Transformer2DModel``)
DENOISERS = ("UNet2DModel", "DiTTransformer2DModel", "Transformer2DModel")
AUTOENCODERS = ("AutoencoderKL",)
#: config fields that must be positive integers (or lists of them), per model class
_POSITIVE = {"UNet2DModel": ("in_channels", "out_channels", "sample_size", "block_out_channels",
                             "layers_per_block", "norm_num_groups"),
             "DiTTransformer2DModel": ("in_channels", "out_channels", "sample_size", "patch_size", "num_layers",
                                       "num_attention_heads", "attention_head_dim", "num_embeds_ada_norm"),
             "AutoencoderKL": ("in_channels", "out_channels", "sample_size", "block_out_channels",
                               "layers_per_block", "latent_channels", "norm_num_groups")}
_POSITIVE["Transformer2DModel"] = _POSITIVE["DiTTransformer2DModel"]


def diffusers():
    return optional_import("diffusers", "diffusers", "pretrained diffusers models")


def check_config(config: Mapping[str, Any], where: str, kinds: Sequence[str] = ("UNet2DModel",)) -> str:
    """The model class named by a diffusers ``config`` (one of ``kinds``; a config without a name is
    the first), after refusing a field that is not a positive integer and a network of more than
    :data:`MAX_PARAMETERS` parameters (counted on the meta device)."""
    kind = config.get("_class_name", kinds[0])
    if kind not in kinds:
        raise SerializationError(f"{where}: _class_name={kind!r}; expected {' or '.join(kinds)}")
    for field in _POSITIVE[kind]:
        value = config.get(field)
        items = value if isinstance(value, (list, tuple)) else [value]
        if value is not None and not (items and all(type(v) is int and 0 < v <= MAX_WIDTH for v in items)):
            raise SerializationError(f"{where}: {field}={value!r} must be a positive integer (at most "
                                     f"{MAX_WIDTH}), or a list of them")
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in getattr(diffusers(), kind).from_config(dict(config)).parameters())
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as e:
        raise SerializationError(f"{where}: not a valid {kind} config ({type(e).__name__}: {e})") from None
    if count > MAX_PARAMETERS:
        raise SerializationError(f"{where}: a {kind} of {count:,} parameters is more than MAX_PARAMETERS="
                                 f"{MAX_PARAMETERS:,} (block_out_channels={config.get('block_out_channels')})")
    return kind


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SerializationError(f"{path}: cannot read it ({type(e).__name__}: {e})") from None
    if not isinstance(config, dict):
        raise SerializationError(f"{path}: not a config (a {type(config).__name__})")
    return config


def pipeline_parts(path: Any) -> dict[str, Path]:
    """The part folders of a local pipeline folder (``model_index.json``), by part name (``unet``,
    ``transformer``, ``vae``, ``scheduler``); empty for anything else."""
    if not isinstance(path, (str, Path)) or not (Path(path) / "model_index.json").is_file():
        return {}
    index = read_config(Path(path) / "model_index.json")
    return {k: Path(path) / k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)
            and (Path(path) / k).is_dir()}


def load_model(model: Any, kinds: Sequence[str], what: str) -> nn.Module:
    """A diffusers model of one of ``kinds`` as is, or read from a local ``save_pretrained`` folder:
    its ``config.json`` checked (:func:`check_config`) before anything is allocated, its weights
    read from :data:`WEIGHTS` only (a folder with only a pickled ``.bin`` is refused, never read)."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a local directory written by save_pretrained, nor a "
                                    f"pipeline folder holding a {what} (nothing is downloaded)")
        if not (path / WEIGHTS).is_file():
            raise SerializationError(f"{path}: no {WEIGHTS}; only safetensors weights are read (a pickled "
                                     "diffusion_pytorch_model.bin never is: convert it with save_pretrained("
                                     "safe_serialization=True))")
        kind = check_config(read_config(path / "config.json"), str(path / "config.json"), kinds)
        return getattr(diffusers(), kind).from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                          low_cpu_mem_usage=False)
    if not isinstance(model, tuple(getattr(diffusers(), k) for k in kinds)):
        raise TypeError(f"{what} must be a diffusers {' or '.join(kinds)} or a local directory, "
                        f"got {type(model).__name__}")
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """A diffusers model's config as JSON, with its class name (``_class_name``)."""
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    return {**json.loads(json.dumps(config)), "_class_name": type(model).__name__}


def from_config(config: Mapping[str, Any], kinds: Sequence[str], where: str) -> nn.Module:
    """The (untrained) model a saved config describes, checked first (:func:`check_config`)."""
    return getattr(diffusers(), check_config(config, where, kinds)).from_config(dict(config))


__all__ = ["AUTOENCODERS", "DENOISERS", "WEIGHTS", "check_config", "diffusers", "from_config", "load_model",
           "model_config", "pipeline_parts", "read_config"]
