"""``server backup``, ``server restore`` and ``server check`` (registered in ``server.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from trustfleet.cli._common import HomeOpt, JsonOpt, command_runtime, console, emit_json, now
from trustfleet.errors import InvalidInput
from trustfleet.fileio import read_bounded

__all__ = ["backup", "check", "restore"]

_MAX_KEY_FILE_BYTES: Final = 16 * 1024

PassphraseOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file", help="Encrypt with the passphrase on the first line of this file."
    ),
]


def _read_small(path: Path, *, what: str) -> bytes:
    try:
        data = read_bounded(path, max_bytes=_MAX_KEY_FILE_BYTES)
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the {what} {path}: {exc.strerror or exc}", hint="check the path",
            code="backup.key.file",
        ) from exc  # fmt: skip
    if data is None:
        raise InvalidInput(f"the {what} {path} is larger than 16 KiB", code="backup.key.file")
    return data


def _passphrase(path: Path) -> bytes:
    lines = _read_small(path, what="passphrase file").splitlines()
    return lines[0] if lines else b""


@contextmanager
def _progress(json_out: bool, what: str) -> Iterator[Callable[[int, int], None]]:
    columns = (TextColumn(what), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=json_out) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def backup(
    home: HomeOpt,
    out: Annotated[Path, typer.Option("--out", help="The backup file to write (mode 0600).")],
    passphrase_file: PassphraseOpt = None,
    recipient: Annotated[
        Path | None,
        typer.Option("--recipient", help="Encrypt to this X25519 public key (PEM) instead."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write one encrypted file holding the home: store, tokens, config, secrets, TLS, TUF
    repository, audit log (consistent while the server runs; docs/lifecycle.md)."""
    from trustfleet.services import backup_crypto
    from trustfleet.services.backup import take_backup

    if (passphrase_file is None) == (recipient is None):
        raise InvalidInput(
            "give exactly one of --passphrase-file and --recipient",
            hint="a backup holds the home's secrets; it is always encrypted",
            code="backup.key.missing",
        )  # fmt: skip
    if passphrase_file is not None:
        key = backup_crypto.key_for_passphrase(_passphrase(passphrase_file))
    else:
        assert recipient is not None  # noqa: S101  # checked above
        pub = backup_crypto.load_recipient(_read_small(recipient, what="recipient key"))
        key = backup_crypto.key_for_recipient(pub)
    with command_runtime(home) as rt, _progress(json_out, "backing up") as step:
        report = take_backup(rt, out=out, key=key, now=now(), progress=step)
    doc: dict[str, Any] = {
        "out": str(report.out), "files": report.files, "bytes": report.bytes,
        "schema_revision": report.schema_revision, "encryption": report.kdf,
        "skipped": list(report.skipped),
    }  # fmt: skip
    if json_out:
        emit_json(doc)
        return
    console.print(
        f"[green]✓[/] backup written to {report.out} ({report.files} files, "
        f"{report.bytes / 1e6:.1f} MB, store at {report.schema_revision or '?'})",
        soft_wrap=True,
    )
    if report.skipped:
        console.print(f"  left out (not files): {', '.join(report.skipped)}", soft_wrap=True)


def restore(
    source: Annotated[Path, typer.Argument(help="The backup file.")],
    home: Annotated[
        Path, typer.Option("--home", help="The NEW server home to restore into (new or empty).")
    ],
    passphrase_file: Annotated[
        Path | None,
        typer.Option("--passphrase-file", help="The passphrase (first line of this file)."),
    ] = None,
    identity: Annotated[
        Path | None,
        typer.Option("--identity", help="The X25519 private key (PEM) the backup was made for."),
    ] = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store-url",
            help="An EMPTY PostgreSQL database to load the store into (a backup of a "
            "PostgreSQL store needs one).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore a backup into a new server home; then 'server run --home' serves it."""
    from trustfleet.services.backup_crypto import load_identity
    from trustfleet.services.restore import restore_backup

    if (passphrase_file is None) == (identity is None):
        raise InvalidInput(
            "give exactly one of --passphrase-file and --identity",
            hint="the one the backup was made with", code="backup.key.missing",
        )  # fmt: skip
    secret: dict[str, Any] = (
        {"passphrase": _passphrase(passphrase_file)}
        if passphrase_file is not None
        else {"identity": load_identity(_read_small(identity, what="identity file"))}  # type: ignore[arg-type]  # one is given
    )
    with _progress(json_out, "restoring") as step:
        report = restore_backup(
            source, home=home, now=now(), progress=step, store_url=store_url, **secret
        )
    doc = {"home": str(report.home), "files": report.files, "bytes": report.bytes, **report.meta}
    if json_out:
        emit_json(doc)
        return
    console.print(
        f"[green]✓[/] restored {report.files} files into {report.home} (backup of "
        f"{report.meta.get('created_at', '?')}, store at {report.meta.get('schema_revision')})",
        soft_wrap=True,
    )
    console.print(f"  next: trustfleet server run --home {report.home}", soft_wrap=True)


def check(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """List what expires soon: CA and TLS certificates, CRLs, OCSP signing, TUF metadata,
    device certificates. Exits 1 when anything is critical or expired."""
    from trustfleet.services.expiry import collect_expiries, worst_level

    with command_runtime(home) as rt:
        items = collect_expiries(rt, now=now())
    code = 1 if worst_level(items) in ("critical", "expired") else 0
    if json_out:
        emit_json({"items": [item.document() for item in items], "exit_code": code})
        raise typer.Exit(code)
    _present_expiries(items)
    raise typer.Exit(code)


def _present_expiries(items: Any) -> None:
    from rich.table import Table

    table = Table("level", "kind", "subject", "not after", "time left")
    colour = {"ok": "green", "warning": "yellow", "critical": "red", "expired": "bold red"}
    for item in items:
        level = f"[{colour[item.level]}]{item.level}[/]"
        table.add_row(level, item.kind, item.subject, item.not_after.isoformat(), item.left_text())
    console.print(table)
