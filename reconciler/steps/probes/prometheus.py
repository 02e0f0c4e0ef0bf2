"""Prometheus checks: one instant PromQL query (`GET /api/v1/query`), whose one value must lie
within the check's `min` and `max`.

The value is the check's measurement: kept in the result, and compared with the baseline's by
`compare.prometheus_increase_pct`. A query that answers no series is not yet (the target may
not have been scraped yet); one that answers several is a mistake in the query, said at once.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from reconciler.state.model import PrometheusSpec
from reconciler.steps.probes import ENGINE_HOST, Failed, NotYet

__all__ = ["Reading", "probe", "query"]

_ANSWER_CAP = 1_000_000  # bytes of a query's answer read at most


class Reading(NotYet):
    """A value read that is not within bounds (yet): the detail, and the value itself."""

    def __init__(self, detail: str, value: float) -> None:
        super().__init__(detail)
        self.value = value


def probe(spec: PrometheusSpec, engine_host: str, left: float) -> tuple[str, float]:
    """One query: the detail and the value when it lies within bounds; `Reading` (with the
    value) when it does not, `NotYet` when there is no value yet, `Failed` for a query that
    can never pass as written."""
    value = query(spec, engine_host, left)
    shown = f"{spec.query} = {value:g}"
    if spec.min is not None and value < spec.min:
        raise Reading(f"{shown}, under the least {spec.min:g}", value)
    if spec.max is not None and value > spec.max:
        raise Reading(f"{shown}, over the greatest {spec.max:g}", value)
    return shown, value


def query(spec: PrometheusSpec, engine_host: str, left: float) -> float:
    """The query's one value, asked of the server within `left` seconds (at most 10)."""
    if left <= 0:
        raise NotYet(f"{spec.query}: deadline reached")
    base = spec.url.replace(ENGINE_HOST, engine_host).rstrip("/")
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': spec.query})}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - URL scheme validated by the state model
    try:
        with urllib.request.urlopen(request, timeout=min(left, 10.0)) as response:  # noqa: S310 - as above
            answer = _json(response.read(_ANSWER_CAP))
    except urllib.error.HTTPError as error:
        answer = _json(error.read(_ANSWER_CAP))
        if error.code == 400:  # a query Prometheus cannot parse or run
            raise Failed(f"{spec.query}: {answer.get('error', 'bad query')}") from error
        raise NotYet(f"{base}: HTTP {error.code}") from error
    except (urllib.error.URLError, OSError) as error:
        raise NotYet(f"{base}: {getattr(error, 'reason', error)}") from error
    return _value(spec.query, answer)


def _value(text: str, answer: dict[str, Any]) -> float:
    if answer.get("status") != "success":
        raise NotYet(f"{text}: {answer.get('error') or 'no answer'}")
    data = answer.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(text, result[1])
    if kind != "vector" or not isinstance(result, list):
        raise Failed(f"{text}: answers a {kind}, not one value (an instant vector or scalar)")
    if not result:
        raise NotYet(f"{text}: no series (yet)")
    if len(result) > 1:
        labels = [json.dumps(series.get("metric", {}), sort_keys=True) for series in result[:3]]
        raise Failed(
            f"{text}: answers {len(result)} series, not one ({', '.join(labels)}...): "
            "aggregate it (sum, max, ...) or select one"
        )
    return _number(text, (result[0].get("value") or [None, None])[1])


def _number(text: str, raw: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        raise NotYet(f"{text}: value {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise NotYet(f"{text}: value {raw} is not finite")
    return value


def _json(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
