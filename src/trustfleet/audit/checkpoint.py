"""C2SP transparency log checkpoints (c2sp.org/tlog-checkpoint): the note text of a tree head.

::

    <origin>
    <tree size, decimal, no leading zero>
    <base64 of the 32-byte RFC 6962 root hash>
    [<extension line>...]
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Final

from trustfleet.audit._vkeys import NoteError, b64decode_strict

__all__ = ["MAX_TREE_SIZE", "Checkpoint", "CheckpointError", "parse_checkpoint"]

MAX_TREE_SIZE: Final = 2**64 - 1
"""The largest tree size a checkpoint may state (a uint64)."""

_ROOT_BYTES: Final = 32
_SIZE_RE: Final = re.compile(r"0|[1-9][0-9]{0,19}")


class CheckpointError(NoteError):
    """A checkpoint text that is malformed."""


def _check_line(line: str, *, what: str) -> None:
    if not line:
        raise CheckpointError(f"checkpoint {what} is empty")
    if any(ch < " " for ch in line):
        raise CheckpointError(f"checkpoint {what} contains a newline or a control character")


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, size, root hash and optional extension lines.

    Raises:
        CheckpointError: A field cannot be written as a valid checkpoint.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, what="origin")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {self.size} is out of range")
        if len(self.root) != _ROOT_BYTES:
            raise CheckpointError("checkpoint root hash is not 32 bytes")
        for line in self.extensions:
            _check_line(line, what="extension line")

    def text(self) -> str:
        """The note text: ``origin\\nsize\\nbase64(root)\\n`` then one line per extension."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(f"{line}\n" for line in [*lines, *self.extensions])


def _parse_root(line: str) -> bytes:
    root = b64decode_strict(line, what="checkpoint root hash", error=CheckpointError)
    if len(root) != _ROOT_BYTES:
        raise CheckpointError("checkpoint root hash is not the base64 of 32 bytes")
    return root


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint's note text strictly.

    Args:
        text: The note text (as :attr:`trustfleet.audit.note.Note.text`), ending in a newline.

    Returns:
        The checkpoint; ``parse_checkpoint(c.text()) == c``.

    Raises:
        CheckpointError: Fewer than three lines, an empty line, a size that is not a decimal
            without leading zeros, or a root that is not the base64 of 32 bytes.
    """
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint text does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint has fewer than three lines")
    origin, size_line, root_line, *extensions = lines
    if not _SIZE_RE.fullmatch(size_line):
        raise CheckpointError("checkpoint tree size is not a decimal without leading zeros")
    return Checkpoint(
        origin=origin,
        size=int(size_line),
        root=_parse_root(root_line),
        extensions=tuple(extensions),
    )
