"""Features: one feature in full, a manual label, and the paging query other routers use."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from deployments import views
from deployments.deps import MAX_ROW_ID, PageDep, ServicesDep, SessionDep
from deployments.routes import errors
from deployments.schemas import ActiveLabelIn, FeatureDetail, FeaturePage, ManualLabelIn
from saeray import catalogue
from saeray.browser.features import (
    FeatureFilter,
    FeatureQuery,
    FeatureSort,
    SearchField,
    list_features,
)
from saeray.db.tables import Feature, FeatureLabel
from saeray.errors import InvalidInputError
from saeray.labeling import activate_label, set_manual_label

router = APIRouter(prefix="/features", tags=["features"], responses=errors(400, 401, 404, 422))


async def get_feature_query(
    page: PageDep,
    sort: FeatureSort = FeatureSort.FREQUENCY,
    order: Literal["asc", "desc"] = "desc",
    q: Annotated[
        str | None, Query(max_length=200, description="Text to search for (case-insensitive)")
    ] = None,
    search_in: Annotated[
        SearchField,
        Query(
            description="Where to search: the active label, its category, "
            "the top tokens, or any of them"
        ),
    ] = SearchField.ANY,
    filter: FeatureFilter = FeatureFilter.ALL,
) -> FeatureQuery:
    return FeatureQuery(
        sort=sort,
        descending=order == "desc",
        search=q.strip() if q and q.strip() else None,
        search_in=search_in,
        filter=filter,
        limit=page.limit,
        offset=page.offset,
    )


FeatureQueryDep = Annotated[FeatureQuery, Depends(get_feature_query)]
FeatureId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A feature's row id")]


def feature_page(session: SessionDep, extraction_id: str, query: FeatureQuery) -> FeaturePage:
    total, rows = list_features(session, extraction_id, query)
    return views.feature_page(extraction_id, total, rows, query.limit, query.offset)


@router.get("/{feature_id}", response_model=FeatureDetail)
def get_feature(feature_id: FeatureId, session: SessionDep, services: ServicesDep) -> FeatureDetail:
    """Statistics, histogram, top tokens, logit effects, examples with the feature's
    activation on every token, and the label history with the active label marked."""
    feature = catalogue.get(session, Feature, feature_id)
    return views.feature_detail(session, feature, services.artifacts)


@router.patch("/{feature_id}", response_model=FeatureDetail)
def label_feature(
    feature_id: FeatureId, body: ManualLabelIn, session: SessionDep, services: ServicesDep
) -> FeatureDetail:
    """Give the feature a manual label; it becomes the active one and joins the history."""
    set_manual_label(session, feature_id, body.label, category=body.category)
    feature = catalogue.get(session, Feature, feature_id)
    session.refresh(feature)
    return views.feature_detail(session, feature, services.artifacts)


@router.put("/{feature_id}/active-label", response_model=FeatureDetail, responses=errors(409))
def choose_label(
    feature_id: FeatureId, body: ActiveLabelIn, session: SessionDep, services: ServicesDep
) -> FeatureDetail:
    """Show one of the feature's labels from its history (any run's, or a manual one)."""
    catalogue.get(session, Feature, feature_id)
    if catalogue.get(session, FeatureLabel, body.label_id).feature_id != feature_id:
        raise InvalidInputError(
            f"label {body.label_id} belongs to another feature; pick one from this "
            f"feature's history (GET /api/v1/features/{feature_id})"
        )
    feature = activate_label(session, body.label_id)
    return views.feature_detail(session, feature, services.artifacts)
