"""The hot path's shortcuts equal the plain computations they replace, on random input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from hub.ledger.bulk import _convert_instants
from hub.models.types import UTCDateTime

ZONES = [UTC, timezone(timedelta(hours=2)), ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")]
# Few distinct instants, so values repeat as in a batch; DST folds of both zones included.
INSTANTS = st.builds(
    lambda base, minutes, zone, fold: (
        (base + timedelta(minutes=15 * minutes)).astimezone(zone).replace(fold=fold)
    ),
    st.sampled_from(
        [datetime(2026, 10, 25, 0, 0, tzinfo=UTC), datetime(2026, 11, 1, 4, 0, tzinfo=UTC)]
    ),
    st.integers(0, 12),
    st.sampled_from(ZONES),
    st.integers(0, 1),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), INSTANTS), max_size=40))
def test_convert_instants_equals_converting_each_value(values: list[datetime | None]) -> None:
    for dialect in (sqlite.dialect(), postgresql.psycopg.dialect()):  # type: ignore[attr-defined]
        convert = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert convert is not None
        fast = _convert_instants(values, convert)
        plain = [convert(v) for v in values]
        assert [repr(v) for v in fast] == [repr(v) for v in plain]
