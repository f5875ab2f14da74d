"""What a labeling job will cost, before it starts: prompts are built for a sample of the
features it would label and their size is extrapolated. Retries and repairs are not in
it (a few percent on a healthy provider), and output tokens are a typical answer's."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from saeray.artifacts import ArtifactStore
from saeray.catalogue import get
from saeray.db.tables import ExtractionJob, PromptTemplate
from saeray.errors import InvalidInputError
from saeray.labeling.config import LabelingConfig
from saeray.labeling.evidence import feature_stats, load_evidence
from saeray.labeling.items import ANSWER_TOKENS, estimate_tokens
from saeray.labeling.pricing import price_for, price_table
from saeray.labeling.prompt import PromptBuilder
from saeray.labeling.selection import count, expand, select_features


@dataclass(frozen=True)
class CostEstimate:
    model: str
    features: int
    sampled: int
    input_tokens: int
    output_tokens: int
    usd: float | None  # None: no price known for the model (see SAERAY_LABEL_PRICES)
    input_per_mtok: float | None
    output_per_mtok: float | None


def estimate_labeling_cost(
    session: Session,
    extraction_id: str,
    config: LabelingConfig,
    *,
    sample: int = 64,
    store: ArtifactStore | None = None,
) -> CostEstimate:
    """Estimated tokens and USD for labeling what ``config`` selects with its primary
    provider, from the prompts of ``sample`` evenly spread features."""
    config = config.validated()
    get(session, ExtractionJob, extraction_id)
    selection = select_features(
        session, extraction_id, config.features, only_unlabeled=config.only_unlabeled
    )
    total = count(selection)
    if total == 0:
        raise InvalidInputError(f"extraction {extraction_id} has no features to label here")
    template = (
        get(session, PromptTemplate, config.prompt_template_id)
        if config.prompt_template_id
        else None
    )
    builder = PromptBuilder.from_template(
        template, top_examples=config.top_examples, quantile_examples=config.quantile_examples
    )
    stats = feature_stats(session, extraction_id, expand(selection))
    step = max(1, len(stats) // sample)
    sampled = stats[::step][:sample]
    evidence = load_evidence(store or ArtifactStore(), extraction_id, sampled)
    prompt_tokens = [estimate_tokens(builder.conversation(e).characters) for e in evidence]
    input_tokens = round(sum(prompt_tokens) / len(prompt_tokens) * total)
    output_tokens = ANSWER_TOKENS * total
    price = price_for(config.primary, price_table())
    return CostEstimate(
        model=str(config.primary),
        features=total,
        sampled=len(sampled),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        usd=price.cost(input_tokens, output_tokens) if price else None,
        input_per_mtok=price.input_per_mtok if price else None,
        output_per_mtok=price.output_per_mtok if price else None,
    )
