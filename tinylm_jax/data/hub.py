"""Hugging Face Hub ids (`org/name`, optionally `@revision`) where a local path is expected:
`tinylm import-hf --hf_dir=` and `DataConfig.tokenizer`.

A name that exists locally (or is a URL such as gs://...) is used as is; otherwise a name of
the Hub's `org/name` form is fetched into (or, with `HF_HUB_OFFLINE=1`, read from)
huggingface_hub's cache by `snapshot_download`, and its snapshot directory is used.
"""

from __future__ import annotations

import os
import re

from tinylm_jax.errors import DataError

# The Hub's repo id form: one namespace and one name, with an optional @revision.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*(@[\w.\-/]+)?")
# What a tokenizer needs from a model repo (tokenizer files and the special-token configs).
TOKENIZER_FILES = [
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
]
# What `import-hf` needs: configs, tokenizer and safetensors weights (never pickled ones).
CHECKPOINT_FILES = ["*.json", "*.safetensors", "tokenizer.model"]


def is_hub_id(name: str) -> bool:
    """True for `org/name[@revision]` that is not an existing local path or a URL."""
    if "://" in name or os.path.exists(os.path.expanduser(name)):
        return False
    return _HUB_ID.fullmatch(name) is not None


def resolve(name: str, allow_patterns: list[str], what: str) -> str:
    """`name` itself, or the local snapshot directory of the Hub repo it names.

    `what` names the setting for the error message (e.g. "DataConfig.tokenizer").
    """
    if not is_hub_id(name):
        return name
    from huggingface_hub import snapshot_download

    repo_id, _, revision = name.partition("@")
    try:
        return snapshot_download(repo_id, revision=revision or None, allow_patterns=allow_patterns)
    except Exception as error:  # noqa: BLE001 - every failure gets the same explanation
        first = (str(error).splitlines() or [""])[0]
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = (
            "HF_HUB_OFFLINE is set, so it must already be in the Hugging Face cache ($HF_HOME)"
            if offline
            else "check the id and your network (or log in with `hf auth login` if it is gated)"
        )
        raise DataError(
            f"{what}={name!r} is not a local path, and fetching it as a Hugging Face Hub repo "
            f"failed ({type(error).__name__}: {first}); {hint}"
        ) from None
