"""Moving-average crossover backtest computed with torch (workers only).

Prices are synthetic but deterministic: the generator is seeded from
symbol/timeframe/dates, so the same request always gives the same result.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Any

import torch

# Bars per year and the length of one bar in hours, per supported timeframe.
TIMEFRAMES: dict[str, tuple[float, float]] = {
    "5m": (252 * 24 * 12, 1 / 12),
    "15m": (252 * 24 * 4, 0.25),
    "1h": (252 * 24, 1.0),
    "4h": (252 * 6, 4.0),
    "1d": (252, 24.0),
}
MAX_BARS = 50_000


def _seed(symbol: str, timeframe: str, start: str, end: str) -> int:
    digest = hashlib.sha256(f"{symbol}|{timeframe}|{start}|{end}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def _sma(series: torch.Tensor, window: int) -> torch.Tensor:
    """Simple moving average via conv1d; the first window-1 values are NaN."""
    kernel = torch.full((1, 1, window), 1.0 / window, dtype=series.dtype)
    valid = torch.nn.functional.conv1d(series.view(1, 1, -1), kernel).view(-1)
    pad = torch.full((window - 1,), float("nan"), dtype=series.dtype)
    return torch.cat([pad, valid])


def run_backtest(
    strategy: dict[str, Any],
    *,
    symbol: str,
    timeframe: str,
    start_date: str,
    end_date: str,
    initial_capital: float,
) -> dict[str, Any]:
    if timeframe not in TIMEFRAMES:
        raise ValueError(
            f"unsupported timeframe {timeframe!r} (supported: {', '.join(TIMEFRAMES)})"
        )
    bars_per_year, bar_hours = TIMEFRAMES[timeframe]
    hours = (
        datetime.fromisoformat(end_date) - datetime.fromisoformat(start_date)
    ).total_seconds() / 3600
    # Trading-hours approximation: 5 of 7 days.
    n_bars = int(min(MAX_BARS, max(0.0, hours * 5 / 7 / bar_hours)))

    indicators = strategy["indicators"]
    fast_w = int(indicators["fast_ma"]["window"])
    slow_w = int(indicators["slow_ma"]["window"])
    if n_bars < slow_w + 2:
        raise ValueError(
            f"date range gives {n_bars} {timeframe} bars; the slow MA needs at least {slow_w + 2}"
        )

    sizing = strategy.get("position_sizing") or {}
    fraction = float(sizing.get("fraction", 1.0))
    allow_short = bool((strategy.get("signals") or {}).get("allow_short", False))
    cost = float((strategy.get("costs") or {}).get("commission_bps", 0.0)) / 10_000

    gen = torch.Generator().manual_seed(_seed(symbol, timeframe, start_date, end_date))
    vol = 0.20 / math.sqrt(bars_per_year)  # 20 % annualised volatility
    drift = 0.03 / bars_per_year
    log_ret = torch.randn(n_bars, generator=gen, dtype=torch.float64) * vol + drift
    prices = 100.0 * torch.exp(torch.cumsum(log_ret, dim=0))

    fast = _sma(prices, fast_w)
    slow = _sma(prices, slow_w)
    ready = ~torch.isnan(slow)
    long_sig = (fast > slow) & ready
    short_sig = (fast < slow) & ready & allow_short
    position = long_sig.to(torch.float64) - short_sig.to(torch.float64)
    position = position * fraction

    # Trade on the next bar: today's position earns tomorrow's return.
    bar_ret = torch.zeros_like(prices)
    bar_ret[1:] = prices[1:] / prices[:-1] - 1.0
    held = torch.zeros_like(position)
    held[1:] = position[:-1]
    turnover = torch.abs(torch.diff(position, prepend=torch.zeros(1, dtype=torch.float64)))
    strat_ret = held * bar_ret - turnover * cost
    equity = initial_capital * torch.cumprod(1.0 + strat_ret, dim=0)

    std = strat_ret.std()
    sharpe = float(strat_ret.mean() / std * math.sqrt(bars_per_year)) if float(std) > 0 else 0.0
    running_max = torch.cummax(equity, dim=0).values
    max_drawdown = float(((equity - running_max) / running_max).min())
    final_equity = float(equity[-1])

    return {
        "strategy": strategy.get("name"),
        "symbol": symbol,
        "timeframe": timeframe,
        "bars": n_bars,
        "total_return": round(final_equity / initial_capital - 1.0, 6),
        "sharpe": round(sharpe, 4),
        "max_drawdown": round(max_drawdown, 6),
        "trades": int((turnover > 0).sum()),
        "final_equity": round(final_equity, 2),
        "torch_version": torch.__version__,
    }
