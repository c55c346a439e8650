"""The PromQL reader of the deploy tests finds every metric an expression reads and
refuses what is not PromQL."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import Exported
from tests.deploy.promql import PromQLError, metric_names, selectors


@pytest.mark.parametrize(("expr", "names"), [
    ("up", {"up"}),
    ('riskengine_decisions_total{decision="reject", scene=~"a|b"}', {"riskengine_decisions_total"}),
    ("sum by (scene) (rate(a_total[5m])) / sum without (x) (rate(b_total[1h] offset 5m))",
     {"a_total", "b_total"}),
    ("sum(rate(a_total[5m])) by (le)", {"a_total"}),
    ('histogram_quantile(0.99, sum by (le) (rate(h_bucket{s=~"$scene"}[$__rate_interval])))',
     {"h_bucket"}),
    ("topk(10, sum by (rule, mode) (rate(hits_total[1m])))", {"hits_total"}),
    ("x == 1 or increase(y_total[5m]) > 0 and on (scene) z > bool 0.2", {"x", "y_total", "z"}),
    ("a / ignoring (b) group_left (c) d", {"a", "d"}),
    ("max_over_time(rate(a_total[5m])[1h:1m]) unless record:name:rate5m", {"a_total",
                                                                          "record:name:rate5m"}),
    ('label_replace(a, "dst", "$1", "src", "(.*)") * -1e3', {"a"}),
    ("time() - 1.5e-3", set()),
])
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_matcher_labels_are_listed() -> None:
    assert selectors('a{x="1",y!~"2"} + b{}') == [("a", ("x", "y")), ("b", ())]


@pytest.mark.parametrize("expr", [
    "sum(rate(a[5m])",               # unclosed
    "rate(a[5m]))",                  # one ')' too many
    "a{x=\"1\"",                     # unclosed braces
    "rate(a[5m)]",                   # mismatched
    "sumx(a)",                       # no such function
    "histogramquantile(0.9, a)",
    "a ; b",                         # not PromQL
    "a # b",
])
def test_what_is_not_promql_is_refused(expr: str) -> None:
    with pytest.raises(PromQLError):
        selectors(expr)


def test_exported_knows_suffixes_and_labels() -> None:
    page = ("# TYPE c counter\nc_total{a=\"1\"} 1\n# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"
            "# TYPE g gauge\n# TYPE quiet counter\n")
    exported = Exported.from_pages(page)
    for name in ("c_total", "h_bucket", "h_sum", "h_count", "g", "quiet_total"):
        assert name in exported
    for name in ("c", "h", "g_total", "quiet"):
        assert name not in exported
    assert exported.problems('sum by (le) (rate(h_bucket{le="1"}[5m])) + c_total{a="2"}') == []
    assert exported.problems('c_total{b="1"} + nope + quiet_total{any="x"}') == [
        "c_total has no label 'b'", "nope is not exported"]
    assert exported.problems("rec:x + up", also=frozenset({"rec:x"})) == []
