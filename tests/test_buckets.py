from prometheus_client.core import HistogramMetricFamily

from tornado_memory_exporter.buckets import BucketCounts, add_histogram


def test_observations_land_in_le_buckets_and_read_cumulatively():
    state = BucketCounts((0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 0.5, 2.0):
        state.observe(value)
    buckets, total = state.cumulative()
    assert buckets == [("0.01", 2), ("0.1", 3), ("1.0", 4), ("+Inf", 5)]
    assert total == 0.005 + 0.01 + 0.05 + 0.5 + 2.0


def test_add_histogram_builds_count_and_sum_samples():
    state = BucketCounts((1.0,))
    state.observe(0.25)
    family = HistogramMetricFamily("x_seconds", "doc", labels=["generation"])
    add_histogram(family, ["2"], state)
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("x_seconds_bucket", "1.0")] == 1
    assert samples[("x_seconds_bucket", "+Inf")] == 1
    assert samples[("x_seconds_count", None)] == 1
    assert samples[("x_seconds_sum", None)] == 0.25
