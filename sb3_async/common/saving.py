"""What a saved model says of itself, read before SB3's ``load`` rebuilds it."""

import copy
import json
import pathlib
import struct
import zipfile
from typing import Any

from stable_baselines3.common.save_util import json_to_data, open_path

__all__ = ["POLICY_FORMAT", "SAVED_BY", "policy_kwargs_of_older_file", "saved_attributes"]

# The attribute that records which class saved a model (saved with it, as every attribute is).
SAVED_BY = "_sb3_async_class"
# The attribute that records the policies' defaults a model was built with. 2: the Paper*
# policies feed their heads straight from the 256-unit layer unless ``net_arch`` is given;
# files without it (1) were built with SB3's default layers there.
POLICY_FORMAT = "_sb3_async_policy_format"


def saved_attributes(path: Any) -> dict[str, Any]:
    """The attributes a model was saved with (the ``data`` entry of SB3's zip file, not deserialized)."""
    if isinstance(path, (str, pathlib.Path)):
        file: Any = open_path(path, "r", verbose=0, suffix="zip")
        position = None
    else:
        file, position = path, path.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            return json.loads(archive.read("data").decode())
    except (zipfile.BadZipFile, KeyError, ValueError, struct.error) as error:
        raise ValueError(f"{path} is not a model saved by SB3's save() ({type(error).__name__}: {error})") from error
    finally:
        if position is None:
            file.close()
        else:
            file.seek(position)


def policy_kwargs_of_older_file(data: dict[str, Any]) -> dict[str, Any] | None:
    """
    For a model saved before the Paper* policies took the paper's heads by default (no
    ``POLICY_FORMAT`` in ``data``) whose ``policy_kwargs`` named no ``net_arch``: its
    ``policy_kwargs`` with the heads it was built with, so that it loads as it was saved.
    ``None`` when the file needs nothing.
    """
    if data.get(POLICY_FORMAT, 1) >= 2 or "policy_class" not in data:
        return None
    saved = json_to_data(json.dumps({key: data[key] for key in ("policy_class", "policy_kwargs") if key in data}))
    policy_kwargs = dict(saved.get("policy_kwargs") or {})
    heads = getattr(saved.get("policy_class"), "sb3_default_heads", None)
    if heads is None or "net_arch" in policy_kwargs or "features_extractor_class" in policy_kwargs:
        # Another policy, heads given, or another extractor: built the same way then and now.
        return None
    return {**policy_kwargs, "net_arch": copy.deepcopy(heads)}
