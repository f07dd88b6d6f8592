"""What a saved model says of itself, read before SB3's ``load`` rebuilds it."""

import json
import pathlib
import struct
import zipfile
from typing import Any

from stable_baselines3.common.save_util import open_path

__all__ = ["SAVED_BY", "saved_attributes"]

# The attribute that records which class saved a model (saved with it, as every attribute is).
SAVED_BY = "_sb3_async_class"


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
