"""The Kaggle API for ``leukemia-cnn data get --source kaggle``: credentials and the download.

The official ``kaggle`` package is optional; without it or without credentials the error says
how to download the archive by hand.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from leukemia_cnn.errors import LeukemiaCNNError


def kaggle_credentials_present() -> bool:
    """Whether the official ``kaggle`` client would find API credentials."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME")
                                             and os.environ.get("KAGGLE_KEY")):
        return True
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    folders += [Path.home() / ".kaggle", config_home / "kaggle"]
    return any((folder / name).is_file() for folder in folders
               for name in ("kaggle.json", "access_token"))


def download_from_kaggle(dataset: str, dest: Path) -> Path:
    """Download ``dataset`` (``owner/name``) as one zip into ``dest`` with the Kaggle API."""
    manual = (f"or download it by hand from https://www.kaggle.com/datasets/{dataset} (the "
              "Download button gives a zip) and run `leukemia-cnn data get --source <that zip>`")
    if importlib.util.find_spec("kaggle") is None:
        raise LeukemiaCNNError("the Kaggle API needs the official `kaggle` package, which is not "
                               f"installed (it is optional: `pip install kaggle`), {manual}")
    if not kaggle_credentials_present():
        raise LeukemiaCNNError("no Kaggle API credentials found: create a token at "
                               "https://www.kaggle.com/settings (API > Create New Token) and "
                               "save it as ~/.kaggle/kaggle.json, or set KAGGLE_USERNAME and "
                               f"KAGGLE_KEY (or KAGGLE_API_TOKEN); {manual}")
    print(f"downloading {dataset} with the Kaggle API ...")
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(dataset, path=str(dest), quiet=False, unzip=False)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - network and auth errors vary
        raise LeukemiaCNNError(f"the Kaggle API could not download {dataset} "
                               f"({type(exc).__name__}: {exc}); {manual}") from exc
    archives = sorted(dest.glob("*.zip"))
    if len(archives) != 1:
        raise LeukemiaCNNError(f"the Kaggle API download of {dataset} left "
                               f"{[p.name for p in dest.iterdir()]} in {dest}, not one zip; {manual}")
    return archives[0]

