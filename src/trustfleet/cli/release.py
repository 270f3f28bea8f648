"""``trustfleet release …``: Build and publish signed firmware releases."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from trustfleet.cli._common import (
    command_runtime,
    console,
    emit_json,
    hint_for_missing,
    now,
    present_done,
    present_page,
)
from trustfleet.cli._options import CursorOpt, HomeOpt, JsonOpt, LimitOpt
from trustfleet.cli._release_verify import show_attestations, verdict_doc, verify_command

__all__ = ["app"]

app = typer.Typer(help="Build and publish signed firmware releases.", no_args_is_help=True)

VersionOpt = Annotated[str, typer.Option("--version", help="Release version, MAJOR.MINOR.PATCH.")]
ModelOpt = Annotated[str, typer.Option("--model", help="Hardware model name.")]
_LIST_HINT = "see the published releases with 'trustfleet release list --home DIR'"


def _record_doc(rec: Any) -> dict[str, Any]:
    return {
        "model": rec.model,
        "version": rec.version,
        "min_version": rec.min_version,
        "image_sha256": rec.image_sha256,
        "image_length": rec.image_length,
        "targets_version": rec.targets_version,
        "published_at": rec.published_at.isoformat(),
    }


@app.command("build")
def build(
    home: HomeOpt,
    version: VersionOpt,
    image: Annotated[Path, typer.Option("--image", help="The full firmware image file.")],
    model: ModelOpt = "sim-v1",
    min_version: Annotated[
        str | None,
        typer.Option("--min-version", help="Lowest installed version it may be installed over."),
    ] = None,
    sbom: Annotated[
        Path | None,
        typer.Option(
            "--sbom",
            help="The image's SBOM (CycloneDX or SPDX JSON); required unless it is a "
            "simulated image, which lists its own components.",
        ),
    ] = None,
    material: Annotated[
        list[str] | None,
        typer.Option(
            "--material", help="A further build input for the provenance: URI=sha256:HEX."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign an image, record its SBOM and signed provenance, stage it (HOME/ota/staging/…)."""
    from trustfleet.ota.manifest import render_manifest
    from trustfleet.services.ota import build_release

    with command_runtime(home) as rt:
        manifest = build_release(
            rt, image=image, version=version, model=model, min_version=min_version, now=now(),
            sbom=sbom, materials=tuple(material or ()),
        )  # fmt: skip
        builder = rt.settings.supply_chain.builder_id
    doc = {**json.loads(render_manifest(manifest)), "builder_id": builder}
    line = (
        f"staged {model} {version} ({manifest.image.length} bytes, "
        f"sha256 {manifest.image.sha256[:16]}…, min_version {manifest.min_version})"
    )
    if manifest.sbom is not None:
        line += (
            f"; SBOM {manifest.sbom.format} with {manifest.sbom.components} components; "
            f"provenance signed, builder {builder}"
        )
    present_done(doc, json_out=json_out, line=line)


@app.command("publish")
def publish(
    home: HomeOpt, version: VersionOpt, model: ModelOpt = "sim-v1", json_out: JsonOpt = False
) -> None:
    """Publish a staged release: deltas, TUF targets, snapshot and timestamp."""
    from trustfleet.services.ota import publish_release

    with (
        command_runtime(home) as rt,
        Progress(console=console, transient=True, disable=json_out) as progress,
    ):
        task = progress.add_task("computing deltas", total=None)

        def step(what: str, done: int, total: int) -> None:
            progress.update(task, description=what, completed=done, total=total or None)

        record = publish_release(rt, model=model, version=version, now=now(), on_progress=step)
    manifest = json.loads(record.manifest)
    doc = {**_record_doc(record), "deltas": [d["from_version"] for d in manifest["deltas"]]}
    deltas = ", ".join(doc["deltas"]) or "none"
    line = (
        f"published {model} {version} (targets version {record.targets_version}; "
        f"deltas from: {deltas})"
    )
    present_done(doc, json_out=json_out, line=line)


@app.command("list")
def list_releases(
    home: HomeOpt,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    limit: LimitOpt = 1000,
    cursor: CursorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List published releases, newest version first, one page at a time."""
    from trustfleet.services.queries import list_releases as query

    with command_runtime(home) as rt:
        page = query(rt, model=model, limit=limit, cursor=cursor)
    present_page(
        "releases", [_record_doc(r) for r in page.items], next_cursor=page.next_cursor,
        json_out=json_out, table=Table("model", "version", "min version", "bytes", "published"),
        cells=lambda r: (r["model"], r["version"], r["min_version"], str(r["image_length"]),
                         r["published_at"]),
    )  # fmt: skip


@app.command("show")
def show(
    home: HomeOpt, version: VersionOpt, model: ModelOpt = "sim-v1", json_out: JsonOpt = False
) -> None:
    """Show a published release and its manifest."""
    from trustfleet.ota.versions import check_model, parse_version

    check_model(model)
    parse_version(version)
    from trustfleet.services.queries import published_release
    from trustfleet.services.release_verify import verify_home_release

    with command_runtime(home) as rt, hint_for_missing(_LIST_HINT):
        record = published_release(rt, model=model, version=version)
        verdict = verify_home_release(rt, model=model, version=version)
    doc = {
        **_record_doc(record),
        "manifest": json.loads(record.manifest),
        "verification": verdict_doc(verdict),
    }
    if json_out:
        emit_json(doc)
        return
    man = doc["manifest"]
    console.print(f"[bold]{model} {version}[/]  min_version={record.min_version}")
    console.print(f"image: {man['image']['target']}  {man['image']['length']} bytes")
    console.print(f"sha256: {man['image']['sha256']}")
    signature = base64.b64decode(man["boot"]["signature"])
    console.print(f"boot key: {man['boot']['key_sha256']}  signature: {len(signature)} bytes")
    for d in man["deltas"]:
        console.print(f"delta from {d['from_version']}: {d['length']} bytes ({d['target']})")
    show_attestations(man, doc["verification"])


app.command("verify")(verify_command)
