"""A Prometheus histogram that takes observations in batches, exported as a collector.

The dispatcher observes two histograms per job (its queue wait and its
attempt's duration), a batch of jobs at a time. prometheus_client's
``Histogram.observe`` takes a lock per add, three adds per observation: per
job that was 1-2 us of the node's 20. Here a batch costs one ``bisect`` per
value and one add per bucket touched, into plain counters, and the series are
turned into a ``HistogramMetricFamily`` only when ``/metrics`` is scraped,
through prometheus_client's public custom-collector interface (``collect``)
instead of writing its private ``_buckets``/``_sum``.

Observations and scrapes both run on the node's trio thread, so the counters
need no lock. The exposition is the one ``Histogram`` gives for the same
values (``_bucket`` with cumulative counts, ``_count``, ``_sum``), without
its ``_created`` series.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class HistogramSeries:
    """The bucket counts and sum of one label combination."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        #: Per bucket (not cumulative); the last one is ``+Inf``.
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    def observe_many(self, values: Sequence[float]) -> None:
        """``observe`` each value: one bisect each, one add per bucket touched."""
        if len(values) == 1:
            self.observe(values[0])
            return
        touched: dict[int, int] = {}
        bounds = self._bounds
        for value in values:
            i = bisect_left(bounds, value)  # the first bucket whose bound is >= value
            touched[i] = touched.get(i, 0) + 1
        counts = self.counts
        for i, n in touched.items():
            counts[i] += n
        self.sum += sum(values)

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip(self._bounds, self.counts, strict=True):
            running += n
            out.append((floatToGoString(bound), float(running)))
        return out


class BatchHistogram(Collector):
    """A histogram family registered in ``registry``; ``labels(...)`` gives its series."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Iterable[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = tuple(bounds)
        self._series: dict[tuple[str, ...], HistogramSeries] = {}
        if not self._labelnames:
            self._series[()] = HistogramSeries(self._bounds)  # exposed from the start
        registry.register(self)

    def labels(self, *values: str) -> HistogramSeries:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self.name} takes labels {self._labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = HistogramSeries(self._bounds)
        return series

    def observe_many(self, values: Sequence[float]) -> None:
        """For a histogram without labels."""
        self.labels().observe_many(values)

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self._documentation, labels=self._labelnames)
        for key, series in self._series.items():
            family.add_metric(list(key), series.cumulative(), series.sum)
        yield family
