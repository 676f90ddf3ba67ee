"""Sharing on the Hugging Face Hub (`kolm push`): an export plus its model card, uploaded in one commit.

`push` exports a kolm model dir in the chosen format into a temporary
folder (or takes a folder that already is an export), writes the model card
for the target repo, creates the repo (`create_repo`, exist_ok) and uploads
the folder (`upload_folder`: the Hub validates the card's YAML, asks which
files go by LFS, then takes the commit). The token comes from the argument,
else `HF_TOKEN`, else the user's `hf auth login`; without one nothing is
exported or sent. `endpoint` (else `HF_ENDPOINT`) points at another Hub.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from kolm.errors import KolmError

__all__ = ["push", "resolve_token"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def resolve_token(token: str | None = None) -> str:
    """The Hub token to use: `token`, else HF_TOKEN, else the saved login; a one-line error if there is none."""
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise KolmError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access); "
            "nothing was uploaded"
        )
    return found


def _is_export(folder: Path) -> bool:
    """Whether `folder` already is an export (a non-kolm model dir, a GGUF or an ONNX folder)."""
    if any(folder.glob("*.gguf")) or (folder / "model.onnx").is_file():
        return True
    import json

    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "")
    except (OSError, ValueError):
        return False
    return not str(model_type).startswith("kolm")


def push(
    model_dir: str | Path,
    repo: str,
    *,
    fmt: str = "hf-llama",
    quant: str | None = None,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Upload `model_dir` to the Hub repo `repo` ("user/name") as format `fmt` with a model card; returns the commit URL.

    A kolm model dir is exported first (see `kolm.export.export_model`); a
    folder that already is an export is uploaded as it is, a card added when
    it has none.
    """
    if not _REPO_ID.match(repo):
        raise KolmError(f"--repo {repo!r} is not of the form USER/NAME (e.g. myname/kolm-tiny)")
    token = resolve_token(token)  # before any work: no token, nothing exported or sent
    model_dir = Path(model_dir)
    if not (model_dir.is_dir() and _is_export(model_dir)):
        from kolm.models.loading import find_model_dir

        model_dir = find_model_dir(model_dir)
    from huggingface_hub import HfApi

    from kolm.export import check_export, export_model
    from kolm.export.card import write_card

    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    with tempfile.TemporaryDirectory(prefix="kolm-push-") as tmp:
        if _is_export(model_dir):
            folder = model_dir
            if not (folder / "README.md").is_file():
                folder = Path(tmp) / "export"
                import shutil

                shutil.copytree(model_dir, folder)
                write_card(folder, model_dir, fmt, quant=quant or "none", repo=repo)
        else:
            quant, _ = check_export(model_dir, fmt, quant=quant)
            folder = export_model(model_dir, fmt, Path(tmp) / "export", quant=quant, card=False)
            write_card(folder, model_dir, fmt, quant=quant, repo=repo)
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(
            repo_id=repo,
            folder_path=str(folder),
            repo_type="model",
            commit_message=f"kolm push: {fmt}" + (f" ({quant})" if quant not in (None, "none") else ""),
        )
    return str(getattr(info, "commit_url", info))
