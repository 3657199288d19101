"""`--weights hf-hub:ORG/NAME[@REVISION]`: a weights file from the Hugging Face hub, through huggingface_hub's
own cache (`$HF_HOME/hub`; downloaded once online, read from there offline with HF_HUB_OFFLINE=1).

The file is then read like any local one (sightx.models.foreign), so the hub path reports what was loaded,
missed and ignored exactly as `--weights FILE` does. Building the model through timm's own `hf-hub:` name
was the other choice; it was not taken because timm then chooses the architecture from the repository's
config and loads strictly, while SightX builds `--arch` with its own head and accounts for every key.

A repository holds its weights under a conventional name: `model.safetensors` (timm, transformers),
`pytorch_model.bin` (older uploads) or `NAME.pth` (RETFound's repositories); the first one present is used.
Whatever stops the download (offline and not cached, a gated or unknown repository) is one line saying
what to do about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sightx.errors import one_line
from sightx.models.foreign import ForeignWeightsError

HF_PREFIX = "hf-hub:"  # also what --checkpoint takes for a hub model folder (sightx.contracts.exported)
INSTALL = "pip install 'sightx[hub]'"
LOGIN = "`hf auth login` (huggingface-cli login) or HF_TOKEN"


def is_hub(weights: str) -> bool:
    return weights.startswith(HF_PREFIX)


def parse(spec: str) -> tuple[str, str | None]:
    """`hf-hub:ORG/NAME[@REVISION]` -> (repository id, revision or None)."""
    repo, _, revision = spec[len(HF_PREFIX) :].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ForeignWeightsError(f"--weights {spec}: a hub name is hf-hub:ORG/NAME[@REVISION]")
    return repo, revision or None


def candidates(repo: str) -> tuple[str, ...]:
    """The file names a repository keeps its weights under, in the order they are tried."""
    return ("model.safetensors", "pytorch_model.bin", f"{repo.split('/')[1]}.pth")


def explain(spec: str, e: Exception) -> ForeignWeightsError:
    """What the hub's refusal means for the user, as one line."""
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    repo, revision = parse(spec)
    page = f"https://huggingface.co/{repo}"
    if isinstance(e, GatedRepoError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        who = "you are not logged in here: " if status == 401 else "this account has no access yet: "
        return ForeignWeightsError(
            f"--weights {spec}: the model is gated and {who}accept its licence on {page}, then log in with {LOGIN}; "
            "or download the file and pass --weights PATH"
        )
    if isinstance(e, RepositoryNotFoundError):
        return ForeignWeightsError(
            f"--weights {spec}: no such model on the hub ({page}), or it is private: check the name, or log in with {LOGIN}"
        )
    if isinstance(e, RevisionNotFoundError):
        return ForeignWeightsError(f"--weights {spec}: {repo} has no revision {revision!r}")
    return ForeignWeightsError(f"--weights {spec}: the hub refused the download ({type(e).__name__}: {one_line(str(e))[:200]})")


def download(spec: str) -> Path:
    """The local file of a hub weights name, from huggingface_hub's cache or downloaded into it."""
    hub = _huggingface_hub(spec)
    repo, revision = parse(spec)
    names = candidates(repo)
    unreachable = False
    for name in names:
        try:
            return Path(hub.hf_hub_download(repo, name, revision=revision))
        except hub.utils.LocalEntryNotFoundError:  # offline or unreachable, and not in the cache
            unreachable = True
        except hub.utils.EntryNotFoundError:  # the repository has no file of this name
            continue
        except Exception as e:  # gated, unknown, refused: what the hub said, as one line
            raise explain(spec, e) from None
    if unreachable:
        raise ForeignWeightsError(
            f"--weights {spec}: not in the Hugging Face cache ({hub.constants.HF_HUB_CACHE}) and the hub cannot be reached "
            "(offline, or HF_HUB_OFFLINE=1): run once online to cache it, or download the file and pass --weights PATH"
        )
    raise ForeignWeightsError(f"--weights {spec}: the repository holds none of {', '.join(names)}: pass the file with --weights PATH")


def _huggingface_hub(spec: str) -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.utils
    except ImportError:
        raise ForeignWeightsError(f"--weights {spec}: weights from the Hugging Face hub need huggingface_hub: {INSTALL}") from None
    return huggingface_hub


def resolved(path: Path) -> str:
    """`FILE@COMMIT` of a file in huggingface_hub's cache (snapshots/COMMIT/FILE): what exactly was loaded."""
    return f"{path.name}@{path.parent.name}"
