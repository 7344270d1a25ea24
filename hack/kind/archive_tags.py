"""archive_tags.py - make every image of a multi-image docker archive count as built for kind.

Usage: python3 archive_tags.py ARCHIVE.tar   (rewrites it in place)

`kind build node-image` imports each kube-*.tar of the release layout and pulls the
required images it did not see in them. It reads an archive's tags from whichever of
`repositories` or `manifest.json` comes first in the tar, and of manifest.json only
the first image (kind v0.30.0, pkg/build/nodeimage/internal/container/docker/archive.go).
`docker save` writes manifest.json first. So this rewrites the archive with a
`repositories` file first that names every image fully (docker.io/kindest/kindnetd,
not docker save's kindest/kindnetd, since kind compares the full names); containerd's
import, which reads manifest.json, is unaffected.
"""
from __future__ import annotations

import io
import json
import os
import sys
import tarfile


def full_name(repository: str) -> str:
    """Docker's normalisation of a repository name: kindest/x -> docker.io/kindest/x."""
    first, _, rest = repository.partition("/")
    if not rest:
        return f"docker.io/library/{repository}"
    if "." in first or ":" in first or first == "localhost":
        return repository
    return f"docker.io/{repository}"


def repositories(manifest: list[dict]) -> dict[str, dict[str, str]]:
    """The v1 `repositories` map {repository: {tag: image id}} of a docker-save manifest."""
    repos: dict[str, dict[str, str]] = {}
    for entry in manifest:
        image_id = entry["Config"].removeprefix("blobs/sha256/").removesuffix(".json")
        for repo_tag in entry.get("RepoTags") or []:
            repository, _, tag = repo_tag.rpartition(":")
            repos.setdefault(full_name(repository), {})[tag] = image_id
    return repos


def rewrite(path: str) -> dict[str, dict[str, str]]:
    with tarfile.open(path) as src:
        manifest = json.load(src.extractfile("manifest.json"))
        repos = repositories(manifest)
        data = json.dumps(repos, sort_keys=True).encode()
        tmp = f"{path}.tmp"
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as dst:
            info = tarfile.TarInfo("repositories")
            info.size, info.mode = len(data), 0o644
            dst.addfile(info, io.BytesIO(data))
            for member in src.getmembers():
                if member.name == "repositories":
                    continue
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    os.replace(tmp, path)
    return repos


if __name__ == "__main__":
    for name, tags in sorted(rewrite(sys.argv[1]).items()):
        print(f"{name}:{','.join(sorted(tags))}")
