"""What a saved model says of itself, read before SB3's ``load`` rebuilds it."""

import copy
import json
import pathlib
import struct
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stable_baselines3.common.save_util import json_to_data, open_path
from stable_baselines3.common.torch_layers import NatureCNN

__all__ = [
    "CURRENT_POLICY_FORMAT",
    "POLICY_FORMAT",
    "SAVED_BY",
    "check_checksums",
    "policy_kwargs_of_older_file",
    "saved_attributes",
]

# The attribute that records which class saved a model (saved with it, as every attribute is).
SAVED_BY = "_sb3_async_class"
# The attribute that records the policies' defaults a model was built with. 2: the Paper*
# policies feed their heads straight from the 256-unit layer unless ``net_arch`` is given;
# files without it (1) were built with SB3's default layers there.
POLICY_FORMAT = "_sb3_async_policy_format"
CURRENT_POLICY_FORMAT = 2


@contextmanager
def _archive(path: Any) -> Iterator[zipfile.ZipFile]:
    """The zip archive at ``path`` (a path or a file object, left at the position it had)."""
    if isinstance(path, (str, pathlib.Path)):
        file: Any = open_path(path, "r", verbose=0, suffix="zip")
        position = None
    else:
        file, position = path, path.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            yield archive
    except (zipfile.BadZipFile, KeyError, ValueError, struct.error) as error:
        raise ValueError(f"{path} is not a model saved by SB3's save() ({type(error).__name__}: {error})") from error
    finally:
        if position is None:
            file.close()
        else:
            file.seek(position)


def saved_attributes(path: Any) -> dict[str, Any]:
    """The attributes a model was saved with (the ``data`` entry of SB3's zip file, not deserialized)."""
    with _archive(path) as archive:
        return json.loads(archive.read("data").decode())


def check_checksums(path: Any) -> None:
    """
    Raise ``ValueError`` naming the first entry of the saved model at ``path`` whose bytes do not
    match their checksum (SB3's ``load`` would only say that the file is not a zip file).
    """
    with _archive(path) as archive:
        damaged = archive.testzip()
    if damaged is not None:
        raise ValueError(f"{path} is damaged and cannot be loaded: its entry {damaged!r} does not match its checksum")


def policy_kwargs_of_older_file(
    data: dict[str, Any], custom_objects: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Any] | None:
    """
    For a model saved before the Paper* policies took the paper's heads by default (no
    ``POLICY_FORMAT`` in ``data``) and built with SB3's default heads: its ``policy_kwargs`` with
    the heads it was built with, and those heads, so that it loads as it was saved. ``None`` when
    the file needs nothing, or when its policy cannot be read (SB3's ``load`` reports that).

    :param data: the saved attributes (:func:`saved_attributes`)
    :param custom_objects: ``load``'s replacements, used in place of the saved entries
    """
    if data.get(POLICY_FORMAT, 1) >= CURRENT_POLICY_FORMAT:
        return None
    custom_objects = custom_objects or {}
    names = ("policy_class", "policy_kwargs")
    try:
        # SB3's load unpickles these again and warns about what it cannot read: warn once.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = json_to_data(json.dumps({key: data[key] for key in names if key in data and key not in custom_objects}))
    except Exception:  # whatever fails here fails again in SB3's load, which reports it
        return None
    saved.update({key: custom_objects[key] for key in names if key in custom_objects})
    policy_kwargs = dict(saved.get("policy_kwargs") or {})
    heads = getattr(saved.get("policy_class"), "sb3_default_heads", None)
    # SB3 added its default heads when net_arch was None, after any extractor but NatureCNN.
    if heads is None or policy_kwargs.get("net_arch") is not None:
        return None
    if policy_kwargs.get("features_extractor_class") == NatureCNN:
        return None
    return {**policy_kwargs, "net_arch": copy.deepcopy(heads)}, copy.deepcopy(heads)
