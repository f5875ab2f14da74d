"""An extraction on a two-node Ray cluster: actors land on both nodes, results stay exact.

Each node offers one ``encoder_slot``, and each actor asks for one, so the two actors
cannot share a node. The nodes are processes on this machine (``ray.cluster_utils``).
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


@pytest.fixture(scope="module")
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"encoder_slot": 1}},
    )
    cluster.add_node(num_cpus=2, resources={"encoder_slot": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_actors_spread_over_two_nodes_and_results_stay_exact(database_url, two_nodes, tmp_path):
    import ray

    assets = build_assets(tmp_path / "assets")
    engine = open_engine(database_url)
    job_id = new_job(engine, assets, num_actors=2, actor_resources={"encoder_slot": 1})
    job = run_extraction_job(job_id, engine=engine)
    assert job.status == "completed", job.error
    nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(nodes) == 2
    assert set(job.statistics["nodes"]) == nodes  # reported by the actors in their partials
    assert job.statistics["actors"] == 2
    reference = reference_for(assets, ExtractionConfig.from_dict(SETTINGS))
    assert_job_matches_reference(engine, job_id, reference, SETTINGS["top_tokens"])
