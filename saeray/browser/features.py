"""Queries behind the feature browser: pages of features with their active labels,
sorted, searched and filtered in the database, and the label history of one feature."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, String, cast, func, or_
from sqlmodel import Session, select

from saeray.db.tables import Feature, FeatureLabel


class FeatureSort(StrEnum):
    FREQUENCY = "frequency"
    MAX_ACTIVATION = "max_activation"
    INDEX = "index"
    LABEL = "label"


class FeatureFilter(StrEnum):
    ALL = "all"
    LABELED = "labeled"
    UNLABELED = "unlabeled"
    FLAGGED = "flagged"
    DEAD = "dead"


class SearchField(StrEnum):
    ANY = "any"  # label, category or token
    LABEL = "label"
    CATEGORY = "category"
    TOKEN = "token"


@dataclass(frozen=True)
class FeatureQuery:
    sort: FeatureSort = FeatureSort.FREQUENCY
    descending: bool = True
    search: str | None = None
    search_in: SearchField = SearchField.ANY
    filter: FeatureFilter = FeatureFilter.ALL
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class FeatureRow:
    feature: Feature
    label: FeatureLabel | None  # the active label, if any


SORT_COLUMNS = {
    FeatureSort.FREQUENCY: Feature.frequency,
    FeatureSort.MAX_ACTIVATION: Feature.max_activation,
    FeatureSort.INDEX: Feature.index,
    FeatureSort.LABEL: func.lower(FeatureLabel.label),
}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _token_condition(search: str) -> ColumnElement[bool]:
    """Top tokens that start with ``search`` (case and a leading space ignored). They are
    JSON (``{"by_count": [{"token": " cat", ...}], ...}``), so the match is on the text
    json.dumps wrote: the key, then the token's start, escaped as JSON escapes it."""
    token = _escape_like(json.dumps(search.strip())[1:-1])
    text = cast(Feature.top_tokens, String)
    return or_(*(text.ilike(f'%"token": "{space}{token}%', escape="\\") for space in ("", " ")))


def _search_condition(search: str, field: SearchField) -> ColumnElement[bool]:
    contains = f"%{_escape_like(search)}%"
    conditions = {
        SearchField.LABEL: FeatureLabel.label.ilike(contains, escape="\\"),  # type: ignore[union-attr]
        SearchField.CATEGORY: FeatureLabel.category.ilike(contains, escape="\\"),  # type: ignore[union-attr]
        SearchField.TOKEN: _token_condition(search),
    }
    if field == SearchField.ANY:
        return or_(*conditions.values())
    return conditions[field]


FILTERS = {
    FeatureFilter.LABELED: Feature.active_label_id.is_not(None),  # type: ignore[union-attr]
    FeatureFilter.UNLABELED: Feature.active_label_id.is_(None),  # type: ignore[union-attr]
    FeatureFilter.FLAGGED: FeatureLabel.flagged.is_(True),  # type: ignore[attr-defined]
    FeatureFilter.DEAD: Feature.is_dead.is_(True),  # type: ignore[attr-defined]
}


def list_features(
    session: Session, extraction_id: str, query: FeatureQuery
) -> tuple[int, list[FeatureRow]]:
    """The number of matching features and one page of them, with their active labels."""
    statement = (
        select(Feature, FeatureLabel)
        .outerjoin(FeatureLabel, FeatureLabel.id == Feature.active_label_id)  # type: ignore[arg-type]
        .where(Feature.extraction_id == extraction_id)
    )
    if query.search:
        statement = statement.where(_search_condition(query.search, query.search_in))
    if query.filter != FeatureFilter.ALL:
        statement = statement.where(FILTERS[query.filter])
    total = session.exec(select(func.count()).select_from(statement.subquery())).one()
    column = SORT_COLUMNS[query.sort]
    order = column.desc() if query.descending else column.asc()
    if query.sort == FeatureSort.LABEL:
        order = order.nulls_last()  # unlabeled features after the labeled ones either way
    statement = (
        statement.order_by(order, Feature.index.asc())  # type: ignore[union-attr]
        .offset(query.offset)
        .limit(query.limit)
    )
    rows = [FeatureRow(feature, label) for feature, label in session.exec(statement)]
    return total, rows


def label_history(session: Session, feature_id: int) -> list[FeatureLabel]:
    """Every label the feature has had, newest first."""
    statement = (
        select(FeatureLabel)
        .where(FeatureLabel.feature_id == feature_id)
        .order_by(FeatureLabel.created_at.desc(), FeatureLabel.id.desc())  # type: ignore[union-attr]
    )
    return list(session.exec(statement))
