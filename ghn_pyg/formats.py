"""Checkpoint formats: the tags and versions of GHN files and training states, and the
one loader every checkpoint goes through (``torch.load`` with ``weights_only=True``)."""

from __future__ import annotations

import os
from typing import Any

import torch

from .fileio import user_path

__all__ = ["CheckpointError", "GHN_FORMAT", "GHN_VERSION", "TRAIN_FORMAT", "TRAIN_VERSION",
           "read_checkpoint", "ghn_payload"]

#: A GHN file: ``{"format", "version", "config", "trained_bits", "vocab", "state_dict"}``.
GHN_FORMAT = "ghn_pyg.GHN"
GHN_VERSION = 1
#: A training state: ``{"format", "version", "config", "step", "ghn" (a GHN payload),
#: "optimizer", "scheduler", ...}``.
TRAIN_FORMAT = "ghn_pyg.train"
TRAIN_VERSION = 1
_VERSIONS = {GHN_FORMAT: GHN_VERSION, TRAIN_FORMAT: TRAIN_VERSION}
_NAMES = {GHN_FORMAT: "GHN checkpoint", TRAIN_FORMAT: "training checkpoint"}


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of another format or version, or of another
    configuration."""


def read_tensors(path: str | os.PathLike, kind: str = "checkpoint",
                 map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (tensors and plain containers only), the
    one way files of tensors are read (checkpoints, state dicts).

    Args:
        path: the file (``~`` and ``$VARS`` expand).
        kind: what the file should be, for messages.
        map_location: as in ``torch.load``.

    Raises:
        CheckpointError: no such file, or corrupted or not a torch file.
    """
    path = user_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {kind} file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for broken files
        raise CheckpointError(f"{path}: corrupted or not a torch checkpoint "
                              f"({type(err).__name__}: {err})") from err


def read_checkpoint(path: str | os.PathLike, formats: tuple[str, ...],
                    map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (tensors and plain containers only) and check its tag.

    Args:
        path: the file (``~`` and ``$VARS`` expand).
        formats: the accepted format tags (:data:`GHN_FORMAT`, :data:`TRAIN_FORMAT`).
        map_location: as in ``torch.load``.

    Returns:
        The payload dict; its ``"format"`` is one of ``formats``.

    Raises:
        CheckpointError: no such file, corrupted or not a torch file, another format, or
            a version newer than this installation reads.
    """
    path = user_path(path)
    wanted = " or ".join(_NAMES.get(f, f) for f in formats)
    kind = _NAMES[formats[0]] if len(formats) == 1 else "checkpoint"
    payload = read_tensors(path, kind, map_location)
    tag = payload.get("format") if isinstance(payload, dict) else None
    if tag not in formats:
        raise CheckpointError(f"{path}: not a ghn_pyg {wanted} (format tag {tag!r})")
    version = payload.get("version", 1)
    if not isinstance(version, int) or version > _VERSIONS[tag]:
        raise CheckpointError(f"{path}: {_NAMES[tag]} version {version!r} is newer than this "
                              f"installation reads ({_VERSIONS[tag]}); upgrade ghn_pyg")
    return payload


def ghn_payload(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The GHN payload of a GHN file or of a training checkpoint (its ``"ghn"`` entry).

    Raises:
        CheckpointError: as :func:`read_checkpoint`, or a training checkpoint without a GHN.
    """
    payload = read_checkpoint(path, (GHN_FORMAT, TRAIN_FORMAT), map_location)
    if payload["format"] == TRAIN_FORMAT:
        payload = payload.get("ghn")
        if not isinstance(payload, dict) or payload.get("format") != GHN_FORMAT:
            raise CheckpointError(f"{user_path(path)}: training checkpoint without a GHN")
    return payload
