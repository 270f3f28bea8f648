"""The file list of a simulated image and the change scripts that derive one version from another.

An image of version ``M.m.p`` is derived from an empty lineage by ``M`` major releases, then
``m`` minor releases, then ``p`` patch releases, each a deterministic change script seeded by
(lineage seed, the version it produces). So ``1.0.1`` is ``1.0.0`` plus one patch script, and
``2.0.0`` is ``1.0.0`` plus one major script. Scripts edit *recipes* (kind, size, content seed,
edits), which are cheap; bytes are generated once, at the end.

What each step changes (fractions of the files):

* patch (``x.y.z+1``): ~2 % of the files edited (small code patches with relocation fix-ups,
  config lines, a replaced blob), up to 1 file added and 1 removed;
* minor (``x.y+1.0``): ~5 % edited, 1-3 files added, 0-2 removed;
* major (``x+1.0.0``): ~30 % edited (a third of those rebuilt whole), ~5 % added, ~3 %
  removed, and a run of ~20 % of the files moved elsewhere in the image (re-layout).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Literal

from trustfleet.sim._image_content import FileKind, rng_for

__all__ = ["Edit", "FileRecipe", "StepKind", "apply_step", "initial_files"]

StepKind = Literal["patch", "minor", "major"]

_KIND_WEIGHTS: dict[FileKind, float] = {"bin": 0.40, "blob": 0.22, "data": 0.30, "cfg": 0.08}
_FILL = 0.62
_EDIT_FRACTION: dict[StepKind, float] = {"patch": 0.02, "minor": 0.05, "major": 0.30}
_DIRS: dict[FileKind, str] = {
    "bin": "usr/lib/lib{w}{i}.so",
    "blob": "usr/share/{w}/{i}.png",
    "data": "var/lib/{w}{i}.db",
    "cfg": "etc/{w}{i}.conf",
}


@dataclass(frozen=True)
class Edit:
    """Replace ``old_len`` bytes at ``pos`` by ``new_len`` bytes generated from ``seed``."""

    pos: int
    old_len: int
    new_len: int
    seed: str
    relocate: bool = False


@dataclass(frozen=True)
class FileRecipe:
    """How to generate one file: base content, then edits in order."""

    name: str
    kind: FileKind
    base_size: int
    seed: str
    edits: tuple[Edit, ...] = field(default=())

    @property
    def size(self) -> int:
        """The file's size after its edits."""
        return self.base_size + sum(e.new_len - e.old_len for e in self.edits)


def _max_file(image_size: int) -> int:
    return max(8192, min(512 << 10, image_size // 48))


def _pick_kind(rng: random.Random) -> FileKind:
    kinds = list(_KIND_WEIGHTS)
    return rng.choices(kinds, weights=[_KIND_WEIGHTS[k] for k in kinds])[0]


def _new_file(rng: random.Random, *, image_size: int, tag: str, index: int) -> FileRecipe:
    kind = _pick_kind(rng)
    low = 256 if kind == "cfg" else 512
    high = 16384 if kind == "cfg" else _max_file(image_size)
    size = int(math.exp(rng.uniform(math.log(low), math.log(max(low + 1, high)))))
    name = _DIRS[kind].format(w=rng.choice("abcdefghijklmnopqrstuvwxyz") * 3, i=index)
    return FileRecipe(name=name, kind=kind, base_size=size, seed=f"{tag}/f{index}")


def initial_files(*, seed: str, image_size: int) -> list[FileRecipe]:
    """The files of the lineage's root image, filling about 62 % of ``image_size``."""
    rng = rng_for(f"{seed}/root")
    files: list[FileRecipe] = []
    total = 0
    while total < image_size * _FILL:
        recipe = _new_file(rng, image_size=image_size, tag=f"{seed}/root", index=len(files))
        files.append(recipe)
        total += recipe.size + 4096
    return files


def _edit_file(rng: random.Random, recipe: FileRecipe, *, tag: str, big: bool) -> FileRecipe:
    size = recipe.size
    if recipe.kind == "blob" or (big and rng.random() < 0.33):
        new_size = max(64, int(size * rng.uniform(0.9, 1.15)))
        return replace(recipe, base_size=new_size, seed=f"{tag}/whole", edits=())
    edits = list(recipe.edits)
    for n in range(rng.randint(3, 12) if big else rng.randint(1, 3)):
        old_len = min(size, rng.randrange(16, 4096 if big else 512))
        pos = rng.randrange(0, max(1, size - old_len))
        new_len = max(0, old_len + rng.randrange(-64, 65)) if recipe.kind != "data" else old_len
        relocate = recipe.kind == "bin" and new_len != old_len
        edits.append(Edit(pos, old_len, new_len, f"{tag}/e{n}", relocate))
        size += new_len - old_len
    return replace(recipe, edits=tuple(edits))


def apply_step(
    files: list[FileRecipe], *, kind: StepKind, seed: str, version: str, image_size: int
) -> list[FileRecipe]:
    """The file list after one release step of ``kind`` producing ``version``."""
    tag = f"{seed}/{version}"
    rng = rng_for(tag)
    out = list(files)
    if out:
        count = max(1, round(len(out) * _EDIT_FRACTION[kind] * rng.uniform(0.7, 1.3)))
        for n, index in enumerate(sorted(rng.sample(range(len(out)), min(count, len(out))))):
            out[index] = _edit_file(rng, out[index], tag=f"{tag}/m{n}", big=kind == "major")
    removed = {"patch": rng.randint(0, 1), "minor": rng.randint(0, 2)}.get(
        kind, len(out) * 3 // 100
    )
    for _ in range(min(removed, max(0, len(out) - 1))):
        out.pop(rng.randrange(len(out)))
    added = {"patch": rng.randint(0, 1), "minor": rng.randint(1, 3)}.get(kind, len(out) // 20)
    for n in range(added):
        new = _new_file(rng, image_size=image_size, tag=f"{tag}/add", index=n)
        out.insert(rng.randrange(len(out) + 1), replace(new, name=f"{new.name}.{version}"))
    if kind == "major" and len(out) > 10:
        run = len(out) // 5
        start = rng.randrange(len(out) - run)
        moved = out[start : start + run]
        del out[start : start + run]
        at = rng.randrange(len(out) + 1)
        out[at:at] = moved
    return out
