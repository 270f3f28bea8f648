"""A two-node RabbitMQ cluster for the whole session, and the test PKI it trusts.

* ``rabbit_pki``: a test CA (EC P-256, in memory) that issues the broker's server certificate
  and device client certificates, and signs CRLs into a hashed CRL folder.
* ``rabbit``: the cluster (support/rabbitmq.py), started once per session (a node boots in
  seconds, not milliseconds) and stopped afterwards; skipped when RabbitMQ is not installed,
  unless ``TF_REQUIRE_RABBITMQ=1``.

Tests that change shared state (users, CRLs) use names of their own, so they never depend on
one another's order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from support.rabbitmq import RabbitCluster, RabbitUnavailable, rabbitmq_cluster
from support.rabbitmq_pki import TestCa


@pytest.fixture(scope="session")
def rabbit_pki(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    """The CA the session's cluster trusts, with an empty CRL published."""
    pki = TestCa(tmp_path_factory.mktemp("rabbit-pki"), name="TF RabbitMQ Test CA")
    pki.publish_crl()
    return pki


@pytest.fixture(scope="session")
def rabbit(rabbit_pki: TestCa, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """A two-node RabbitMQ 3.10 cluster for the session (MQTT over TLS 1.3 with CRL checks)."""
    server_cert, server_key = rabbit_pki.server()
    try:
        with rabbitmq_cluster(
            tmp_path_factory.mktemp("rabbit"),
            nodes=2,
            server_cert=server_cert,
            server_key=server_key,
            ca_bundle=rabbit_pki.ca_file,
            crl_dir=rabbit_pki.crl_dir,
        ) as cluster:
            print(f"\nRabbitMQ cluster of {len(cluster.nodes)} started in {cluster.start_s:.1f} s")
            yield cluster
    except RabbitUnavailable as exc:
        if os.environ.get("TF_REQUIRE_RABBITMQ") == "1":
            pytest.fail(f"TF_REQUIRE_RABBITMQ=1 but {exc}")
        pytest.skip(f"RabbitMQ not available: {exc}")
