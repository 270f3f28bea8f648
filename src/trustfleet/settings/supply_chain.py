"""The ``[supply_chain]`` section of ``trustfleet.toml``: what a release records about how it
was built (SBOM, signed provenance) and which builders a model's devices accept
(docs/supply-chain.md).

Each field's ``description`` is the comment written above it in the file.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from trustfleet.configfile import ConfigModel

__all__ = ["SupplyChainSettings"]

_MODEL = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


class SupplyChainSettings(ConfigModel):
    """SBOMs and provenance of firmware releases (docs/supply-chain.md)."""

    builder_id: str = "urn:trustfleet:builder:release-cli"
    """The builder this home names in the provenance of every release it builds (SLSA
    runDetails.builder.id): a URI naming your build system, e.g. your CI's builder (at most 256
    characters; 'release build' refuses an empty one)."""
    allowed_builders: list[str] = Field(default=[], max_length=1024)
    """Per model, the builders whose releases its devices accept, as "MODEL=BUILDER-URI" (one
    entry per pair). Written into device.toml by 'factory provision'; 'release build' refuses
    another builder for such a model. A model not listed accepts any builder."""
    max_sbom_bytes: int = Field(default=32 << 20, ge=4096, le=256 << 20)
    """The largest SBOM 'release build --sbom' reads (50,000 components with hashes take about
    14 MB of CycloneDX JSON)."""
    max_sbom_components: int = Field(default=50_000, ge=1, le=1_000_000)
    """The most components (CycloneDX, nested included) or packages (SPDX) an SBOM may list."""
    max_provenance_bytes: int = Field(default=256 * 1024, ge=4096, le=16 << 20)
    """The largest provenance envelope (DSSE) a release may carry."""
    max_materials: int = Field(default=32, ge=0, le=1024)
    """The most '--material URI=sha256:HEX' inputs one release build may record."""

    @field_validator("allowed_builders")
    @classmethod
    def _model_equals_uri(cls, value: list[str]) -> list[str]:
        for entry in value:
            model, sep, uri = entry.partition("=")
            if not sep or _MODEL.fullmatch(model) is None or not 0 < len(uri) <= 256:
                raise ValueError(f"'{entry[:80]}' is not MODEL=BUILDER-URI")
        return value

    def builders_for(self, model: str) -> list[str]:
        """The builders allowed for ``model`` (empty: any builder)."""
        return [e.partition("=")[2] for e in self.allowed_builders if e.partition("=")[0] == model]
