"""Fetching a published archive once: streamed to disk, its MD5 checked against the one its
authors publish, and only the files of the expected folder unpacked (no links, no absolute
paths, nothing outside that folder). The folder appears whole or not at all."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath

from pretext.errors import PretextError

CHUNK = 1 << 20


def fetch_archive(url: str, md5: str, root: Path, folder: str, log=print) -> Path | None:
    """`root/folder` unpacked from the .tar.gz at `url`, or None where it cannot be reached
    (no network). A download that fails its checksum, or an archive holding anything but
    regular files under `folder/`, is an error; nothing partial is left behind."""
    root.mkdir(parents=True, exist_ok=True)
    part = root / f".{folder}.tar.gz.part"
    log(f"downloading {url}")
    try:
        digest = stream_to(url, part)
    except OSError:
        part.unlink(missing_ok=True)
        return None
    if digest != md5:
        part.unlink(missing_ok=True)
        raise PretextError(f"downloaded {url} fails its checksum (MD5 {digest}, expected {md5})")
    try:
        return unpack(part, root, folder)
    finally:
        part.unlink(missing_ok=True)


def stream_to(url: str, path: Path) -> str:
    """Copy `url` into `path` a chunk at a time; the MD5 of what was written."""
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=30) as response, path.open("wb") as out:
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def unpack(archive: Path, root: Path, folder: str) -> Path:
    """The regular files of `archive` under `folder/` written into `root/folder`, through a
    staging folder renamed at the end."""
    staging = root / f".{folder}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                target = member_path(member, folder)
                if target is None:
                    continue
                (staging / target).parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, (staging / target).open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
        staging.replace(root / folder)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise PretextError(f"cannot unpack {archive.name}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / folder


def member_path(member: tarfile.TarInfo, folder: str) -> PurePosixPath | None:
    """Where an archive member goes inside `folder` (None: a directory entry, skipped); a
    link, a device or a path that leaves `folder` is refused."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != folder:
        raise PretextError(f"the archive holds {member.name!r}, outside {folder}/: refused")
    if member.isdir():
        return None
    if not member.isfile():
        raise PretextError(f"the archive holds {member.name!r}, which is not a plain file")
    return PurePosixPath(*path.parts[1:])
