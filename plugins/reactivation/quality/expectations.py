"""The gate's one custom expectation: GX's ``UnexpectedRowsExpectation`` that runs its query once.

GX's own evaluates the query twice per validation: once for a sample of up to 200
failing rows (which the SUMMARY result format then drops) and once wrapped in
``COUNT(*)``. The gate needs only the count, so this subclass depends on the count
metric alone, halving the gate's time on the warehouse. Everything else is
inherited: the ``{batch}`` substitution, the renderers, and
``ValidationDefinition.get_unexpected_rows``, which the gate uses to name the
failing locations of a failed check.

Importing this module registers the type (``counted_unexpected_rows_expectation``);
``reactivation.quality.context`` imports it before loading the committed context.
"""

from __future__ import annotations

from typing import Any, ClassVar

from great_expectations.expectations import UnexpectedRowsExpectation


class CountedUnexpectedRowsExpectation(UnexpectedRowsExpectation):
    """Fails when ``unexpected_rows_query`` returns rows; the result carries their count only."""

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.row_count",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        unexpected_row_count: Any = metrics["unexpected_rows_query.row_count"]
        return {"success": unexpected_row_count == 0, "result": {"observed_value": unexpected_row_count}}
