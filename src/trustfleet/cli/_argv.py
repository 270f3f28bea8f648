"""Before parsing: boolean flags that were given a value, and help text without RST markup.

Operators type ``--json true`` or ``--json=false`` as often as ``--json``; Click flags take no
value, so the value is folded into the flag here (``true`` keeps it, ``false`` drops it).
Docstrings are written for Sphinx (````x````, ``:func:`x```) and wrapped at 100 columns; help
shows them as plain prose re-wrapped by the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Final

from typer._click.core import Command  # typer bundles Click privately
from typer.core import TyperGroup as Group
from typer.core import TyperOption as Option

from trustfleet.errors import InvalidInput

__all__ = ["normalise_flags", "plain_text", "tidy_help", "walk_commands"]

TRUE_WORDS: Final = frozenset({"true", "yes", "on", "1", "y"})
FALSE_WORDS: Final = frozenset({"false", "no", "off", "0", "n"})
_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def walk_commands(
    command: Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Command]]:
    """Every command of the tree with its path of names (groups included, root first)."""
    yield path, command
    if isinstance(command, Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk_commands(sub, (*path, name))


def plain_text(text: str | None) -> str | None:
    """``text`` without RST roles and literals, each paragraph on one line."""
    if text is None:
        return None
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = _LITERAL.sub(r"'\1'", text)
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def tidy_help(root: Command) -> Command:
    """Rewrite every command's and option's help in place as plain text; returns ``root``."""
    for _path, command in walk_commands(root):
        command.help = plain_text(command.help)
        command.short_help = plain_text(command.short_help)
        for param in command.params:
            if isinstance(param, Option):
                param.help = plain_text(param.help)
    return root


def _bool_flags(command: Command) -> set[str]:
    return {
        name
        for param in command.params
        if isinstance(param, Option) and param.is_flag and param.is_bool_flag
        for name in param.opts
    }


def normalise_flags(root: Command, args: Sequence[str]) -> list[str]:
    """``args`` with ``--flag VALUE`` / ``--flag=VALUE`` of boolean flags folded into the flag.

    Args:
        root: The root command (its subcommands are followed as the words name them).
        args: The command line after the program name.

    Returns:
        The arguments Click should parse.

    Raises:
        InvalidInput: ``--flag=VALUE`` with a value that is neither true nor false.
    """
    flags, command = _bool_flags(root), root
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            return [*out, arg, *args[i:]]
        if isinstance(command, Group) and arg in command.commands:
            command = command.commands[arg]
            flags |= _bool_flags(command)
            out.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name not in flags:
            out.append(arg)
            continue
        if not eq and i < len(args) and args[i].lower() in TRUE_WORDS | FALSE_WORDS:
            value, eq = args[i], "="
            i += 1
        if eq and value.lower() in FALSE_WORDS:
            continue
        if eq and value.lower() not in TRUE_WORDS:
            raise InvalidInput(
                f"{name} is a switch; {value[:40]!r} is neither true nor false",
                hint=f"write {name} alone, or {name}=true / {name}=false",
            )
        out.append(name)
    return out
