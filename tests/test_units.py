import pytest

from nas.errors import UserError
from nas.units import parse_count, parse_latency_ms


@pytest.mark.parametrize("text, value", [("4.5G", 4.5e9), ("4500M", 4.5e9), ("4.5e9", 4.5e9), ("22M", 22e6), ("1.5 g", 1.5e9), ("300k", 3e5)])
def test_counts(text, value):
    assert parse_count(text, "--flops", "4.5G") == pytest.approx(value)


@pytest.mark.parametrize("text", ["4.5X", "-1G", "", "G", "0", "nan", "1e400"])
def test_bad_counts(text):
    with pytest.raises(UserError):
        parse_count(text, "--flops", "4.5G")


@pytest.mark.parametrize("text, ms", [("8ms", 8.0), ("8 ms", 8.0), ("0.5s", 500.0), ("250us", 0.25), ("12", 12.0)])
def test_latency(text, ms):
    assert parse_latency_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["8 minutes", "-3ms", "", "ms", "0ms"])
def test_bad_latency(text):
    with pytest.raises(UserError):
        parse_latency_ms(text)
