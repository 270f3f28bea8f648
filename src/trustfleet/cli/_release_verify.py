"""``trustfleet release verify`` and the SBOM/provenance part of ``release show``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from trustfleet.cli._common import command_runtime, console, emit_json
from trustfleet.cli._options import JsonOpt
from trustfleet.errors import InvalidInput, VerificationFailed, exit_code_for
from trustfleet.fileio import read_bounded

if TYPE_CHECKING:
    from trustfleet.ota.release_verify import ReleaseVerdict

__all__ = ["show_attestations", "verdict_doc", "verify_command"]

_STYLE = {
    "ok": "[green]ok[/]",
    "refused": "[red]refused[/]",
    "not checked": "[yellow]not checked[/]",
}
_MAX_ROOT_BYTES = 512 * 1024


def verdict_doc(verdict: ReleaseVerdict) -> dict[str, Any]:
    """The JSON document of a release verdict (``release verify --json``)."""
    from trustfleet.services.release_verify import checks_of

    prov = verdict.provenance
    return {
        "model": verdict.model,
        "version": verdict.version,
        "ok": verdict.ok,
        "checks": [
            {"check": name, "status": status, "reason": reason}
            for name, status, reason in checks_of(verdict)
        ],
        "findings": [{"code": f.code, "message": f.message} for f in verdict.findings],
        "image_sha256": verdict.image_sha256,
        "sbom": None
        if verdict.sbom is None
        else {
            "format": verdict.sbom.format,
            "spec_version": verdict.sbom.spec_version,
            "components": verdict.sbom.components,
            "serial": verdict.sbom.serial,
        },
        "provenance": None
        if prov is None
        else {
            "builder_id": prov.builder_id,
            "build_type": prov.build_type,
            "subject": {"name": prov.subject_name, "sha256": prov.subject_sha256},
            "invocation_id": prov.invocation_id,
            "materials": [{"uri": m.uri, "sha256": m.sha256} for m in prov.materials],
        },
        "signed_by": list(verdict.signed_by),
    }


def show_attestations(manifest: dict[str, Any], verification: dict[str, Any]) -> None:
    """Print a release's SBOM and provenance lines (``release show``)."""
    sbom, prov = manifest.get("sbom"), manifest.get("provenance")
    if sbom is None:
        console.print("SBOM: none (released before SBOMs were recorded)")
    else:
        console.print(
            f"SBOM: {sbom['format']}, {sbom['components']} components, "
            f"sha256 {sbom['sha256']} ({sbom['target']})"
        )
    if prov is None:
        console.print("provenance: none")
        return
    verified = verification["provenance"]
    if verified is None:
        refused = [f"{f['code']}: {f['message']}" for f in verification["findings"]]
        console.print(f"provenance: [red]does not verify[/] ({'; '.join(refused)[:300]})")
        return
    console.print(f"provenance: sha256 {prov['sha256']}, builder {verified['builder_id']}")
    console.print(f"signed by release key(s): {', '.join(verification['signed_by'])}")


def _usage(message: str) -> InvalidInput:
    return InvalidInput(
        message,
        hint="give --home DIR, or --repo DIR with --root FILE (a TUF root you trust)",
        code="release.verify.usage",
    )


def _read_root(path: Path) -> bytes:
    try:
        data = read_bounded(path, max_bytes=_MAX_ROOT_BYTES)
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the trusted root {path}: {exc.strerror}",
            hint="give the TUF root you trust, e.g. HOME/public/tuf-root.json",
            code="release.verify.root",
        ) from exc
    if data is None:
        raise InvalidInput(
            f"{path} is larger than {_MAX_ROOT_BYTES} bytes", code="release.verify.root"
        )
    return data


def _verdict(
    home: Path | None,
    repo: Path | None,
    root: Path | None,
    *,
    model: str,
    version: str,
    builders: list[str],
) -> ReleaseVerdict:
    from trustfleet.ota.versions import check_model, parse_version
    from trustfleet.services.release_verify import (
        verify_home_release,
        verify_published_release,
    )

    check_model(model)
    parse_version(version)
    if (home is None) == (repo is None) or (repo is None) != (root is None):
        raise _usage("give either --home, or --repo together with --root")
    if home is not None:
        with command_runtime(home) as rt:
            return verify_home_release(rt, model=model, version=version)
    assert repo is not None and root is not None  # noqa: S101  # checked just above
    from trustfleet.services.release_verify import default_limits

    return verify_published_release(
        repo=repo,
        trusted_root=_read_root(root),
        model=model,
        version=version,
        allowed_builders=builders,
        limits=default_limits(),
    )


def verify_command(
    version: Annotated[str, typer.Option("--version", help="Release version, MAJOR.MINOR.PATCH.")],
    model: Annotated[str, typer.Option("--model", help="Hardware model name.")] = "sim-v1",
    home: Annotated[
        Path | None, typer.Option("--home", help="Verify this server home's repository.")
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="A copy of a published repository (metadata/, targets/)."),
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="With --repo: the TUF root you trust.")
    ] = None,
    builder: Annotated[
        list[str] | None,
        typer.Option("--builder", help="With --repo: a builder the provenance may name."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify a release offline: TUF metadata, manifest, image, SBOM and signed provenance.

    Exits 0 only if every check passes.
    """
    if builder and repo is None:
        raise _usage("--builder goes with --repo (a home applies its [supply_chain] builders)")
    verdict = _verdict(home, repo, root, model=model, version=version, builders=builder or [])
    doc = verdict_doc(verdict)
    if json_out:
        emit_json(doc)
    else:
        table = Table("check", "result", "reason", title=f"release {model} {version}")
        for row in doc["checks"]:
            table.add_row(row["check"], _STYLE[row["status"]], row["reason"])
        console.print(table)
        if doc["sbom"] is not None:
            console.print(f"SBOM: {doc['sbom']['format']}, {doc['sbom']['components']} components")
    if not verdict.ok:
        raise typer.Exit(exit_code_for(VerificationFailed("the release does not verify")))
