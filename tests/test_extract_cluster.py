"""Extractions on a two-node Ray cluster: the actors land on both nodes, an actor on the
node without the driver sends its partials across, and the results stay exact.

The nodes are processes on this machine (``ray.cluster_utils``). Each node offers one
``encoder_slot`` and each actor asks for one, so two actors cannot share a node.

Which actor takes which batch is Ray Data's choice: it hands each batch to the least-busy
actor, ties going to the actor freed last. On this fixture a batch takes ~2 ms of compute,
less than the executor's round between two dispatches, so the same idle actor can take
every batch (it did in 6 of 8 back-to-back jobs on one two-node cluster). Real jobs keep
every actor busy. So the spread test asserts where the actors ran, not that both took
batches; the cross-node path is pinned down by a job whose only actor can run on the
worker node alone.
"""

from __future__ import annotations

import pytest

from saeray.db.engine import open_engine
from saeray.extraction import ExtractionConfig, run_extraction_job
from tests.test_extract_job import (
    SETTINGS,
    assert_job_matches_reference,
    build_assets,
    new_job,
    reference_for,
)

ENCODER_CLASS = "ExtractionEncoder"


@pytest.fixture(scope="module")
def two_nodes():
    """A head node (where the driver runs) and a worker node; yields the worker's node id."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"encoder_slot": 1}},
    )
    worker = cluster.add_node(num_cpus=2, resources={"encoder_slot": 1, "worker_node": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    yield worker.node_id
    ray.shutdown()
    cluster.shutdown()


def encoder_actor_nodes() -> dict[str, str]:
    """actor id -> node id of every encoder actor the cluster has run (dead ones included)."""
    from ray.util.state import list_actors

    return {
        actor.actor_id: actor.node_id
        for actor in list_actors(limit=10_000, raise_on_missing_output=False)
        if ENCODER_CLASS in actor.class_name
    }


@pytest.fixture
def assets(tmp_path):
    return build_assets(tmp_path / "assets")


@pytest.fixture
def reference(assets):
    return reference_for(assets, ExtractionConfig.from_dict(SETTINGS))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_actors_spread_over_two_nodes_and_results_stay_exact(
    database_url, two_nodes, assets, reference
):
    import ray

    engine = open_engine(database_url)
    job_id = new_job(engine, assets, num_actors=2, actor_resources={"encoder_slot": 1})
    earlier = encoder_actor_nodes()
    job = run_extraction_job(job_id, engine=engine)
    assert job.status == "completed", job.error
    nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(nodes) == 2
    this_job = {a: n for a, n in encoder_actor_nodes().items() if a not in earlier}
    assert len(this_job) == 2
    assert set(this_job.values()) == nodes
    # The actors that took batches are this job's, and together they encoded every token.
    shares = job.statistics["tokens_per_actor"]
    assert {worker.split("/")[1] for worker in shares} <= set(this_job)
    assert sum(shares.values()) == job.statistics["tokens"] == reference["tokens"]
    assert_job_matches_reference(engine, job_id, reference, SETTINGS["top_tokens"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_actor_on_the_other_node_than_the_driver_gives_exact_results(
    database_url, two_nodes, assets, reference
):
    engine = open_engine(database_url)
    job_id = new_job(engine, assets, num_actors=1, actor_resources={"worker_node": 1})
    job = run_extraction_job(job_id, engine=engine)
    assert job.status == "completed", job.error
    assert job.statistics["nodes"] == [two_nodes]  # every partial came from the worker node
    assert_job_matches_reference(engine, job_id, reference, SETTINGS["top_tokens"])
