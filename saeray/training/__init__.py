"""Train a TopK SAE on activations streamed from Ray Data, as a job or in-process.

    with session_scope() as session:
        job = create_training_job(session, model=..., hook="blocks.3.hook_resid_post",
                                  dataset="builtin:python-docs", config=demo_training_config())
    job = run_training_job(job.id)   # job.sae_id: the registered SAE (source "trained")

Modules: ``topk`` (the trainable SAE), ``trainer`` (one Adam step at a time), ``stream``
(the Ray Data activation stream and the shuffle buffer), ``fit`` (the loop), ``config``
(every setting), ``job`` (the job row around it all). Only ``config`` and ``job`` are
imported here: they load no torch, so the API can create jobs without it; in-process
training is ``saeray.training.fit.train_sae``.
"""

from saeray.training.config import TrainingConfig, demo_training_config
from saeray.training.job import create_training_job, run_training_job

__all__ = ["TrainingConfig", "create_training_job", "demo_training_config", "run_training_job"]
