"""Backend API: workers registry, backtest operations, health. No torch import, ever.

Start-up touches no database: a fresh canary has an empty schema until
``python -m alembic upgrade head`` runs in this container, and the backend must
already answer ``/api/v1/health`` (with 503 "unhealthy") meanwhile.
"""

from __future__ import annotations

import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import sqlalchemy as sa
from fastapi import BackgroundTasks, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert

from . import __version__, db, strategies

log = logging.getLogger("ktrdr_canary.backend")

# A worker that has not sent a heartbeat for this long is listed as "stale" and gets no work.
STALE_AFTER_S = float(os.environ.get("WORKER_STALE_AFTER_S", "30"))
DISPATCH_TIMEOUT_S = float(os.environ.get("DISPATCH_TIMEOUT_S", "5"))
# How workers reach this backend to report results (compose service name).
PUBLIC_URL = os.environ.get("BACKEND_PUBLIC_URL", "http://backend:8000")
# /api/v1/health answers within this bound even when the database hangs or its host name
# does not resolve (DNS failures are not covered by libpq's connect_timeout).
HEALTH_DB_TIMEOUT_S = float(os.environ.get("HEALTH_DB_TIMEOUT_S", "1.5"))
_health_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health-db")

app = FastAPI(title="ktrdr backend (canary)", version=__version__)


# --------------------------------------------------------------------------- models
class WorkerRegistration(BaseModel):
    worker_id: str = Field(min_length=1, max_length=128)
    worker_type: Literal["backtesting", "training"]
    endpoint_url: str = Field(min_length=1, max_length=512)


class BacktestRequest(BaseModel):
    strategy_name: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    timeframe: str = "1h"
    start_date: str
    end_date: str
    initial_capital: float = Field(default=100_000.0, gt=0)


class OperationResult(BaseModel):
    status: Literal["completed", "failed"]
    result: dict[str, Any] | None = None
    error: str | None = None
    worker_id: str | None = None


# ----------------------------------------------------------------- database errors
@app.exception_handler(sa.exc.OperationalError)
async def _db_unreachable(_: Request, exc: sa.exc.OperationalError) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": f"database unreachable: {exc.orig}"})


@app.exception_handler(sa.exc.ProgrammingError)
async def _db_not_migrated(_: Request, exc: sa.exc.ProgrammingError) -> JSONResponse:
    # Typically "relation ... does not exist": migrations have not been applied yet.
    return JSONResponse(
        status_code=503,
        content={
            "detail": f"database schema not ready (run: python -m alembic upgrade head): {exc.orig}"
        },
    )


# -------------------------------------------------------------------------- health
def _db_state() -> tuple[set[str], set[str]]:
    with db.engine().connect() as conn:
        return db.migration_status(conn)


@app.get("/api/v1/health")
def health() -> JSONResponse:
    body: dict[str, Any] = {"status": "healthy", "service": "backend", "version": __version__}
    try:
        current, heads = _health_pool.submit(_db_state).result(timeout=HEALTH_DB_TIMEOUT_S)
    except FutureTimeout:
        body.update(
            status="unhealthy", database=f"unreachable: no answer within {HEALTH_DB_TIMEOUT_S:g}s"
        )
        return JSONResponse(status_code=503, content=body)
    except Exception as exc:
        body.update(
            status="unhealthy", database=f"unreachable: {type(exc).__name__}: {exc}".strip()
        )
        return JSONResponse(status_code=503, content=body)
    body["migrations"] = {"current": sorted(current), "heads": sorted(heads)}
    if current != heads:
        body.update(status="unhealthy", database="migrations pending")
        return JSONResponse(status_code=503, content=body)
    body["database"] = "ok"
    return JSONResponse(status_code=200, content=body)


# ------------------------------------------------------------------------- workers
def _worker_row(row: sa.Row) -> dict[str, Any]:
    age = (datetime.now(UTC) - row.last_seen_at).total_seconds()
    return {
        "worker_id": row.worker_id,
        "worker_type": row.worker_type,
        "status": row.status if age <= STALE_AFTER_S else "stale",
        "endpoint_url": row.endpoint_url,
        "last_seen_at": row.last_seen_at.isoformat(),
    }


@app.get("/api/v1/workers")
def list_workers() -> list[dict[str, Any]]:
    with db.engine().connect() as conn:
        rows = conn.execute(sa.select(db.workers).order_by(db.workers.c.worker_id)).all()
    return [_worker_row(r) for r in rows]


@app.post("/api/v1/workers/register")
def register_worker(reg: WorkerRegistration) -> dict[str, Any]:
    now = sa.func.now()
    stmt = pg_insert(db.workers).values(
        worker_id=reg.worker_id,
        worker_type=reg.worker_type,
        endpoint_url=reg.endpoint_url.rstrip("/"),
        status="available",
        registered_at=now,
        last_seen_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[db.workers.c.worker_id],
        set_={
            "worker_type": stmt.excluded.worker_type,
            "endpoint_url": stmt.excluded.endpoint_url,
            "status": "available",
            "last_seen_at": now,
        },
    )
    with db.engine().begin() as conn:
        conn.execute(stmt)
    log.info("worker registered: %s (%s) at %s", reg.worker_id, reg.worker_type, reg.endpoint_url)
    return {"success": True, "worker_id": reg.worker_id}


@app.post("/api/v1/workers/{worker_id}/heartbeat")
def heartbeat(worker_id: str) -> dict[str, Any]:
    with db.engine().begin() as conn:
        updated = conn.execute(
            sa.update(db.workers)
            .where(db.workers.c.worker_id == worker_id)
            .values(last_seen_at=sa.func.now(), status="available")
        ).rowcount
    if not updated:
        # The worker re-registers when it sees this (e.g. after the database was reset).
        raise HTTPException(status_code=404, detail=f"worker {worker_id!r} is not registered")
    return {"success": True}


# ---------------------------------------------------------------------- strategies
@app.get("/api/v1/strategies")
def list_strategies() -> dict[str, Any]:
    return {
        "success": True,
        "strategies": strategies.available(),
        "directory": str(strategies.strategies_dir()),
    }


# ----------------------------------------------------------------------- backtests
@app.post("/api/v1/backtests/start")
def start_backtest(req: BacktestRequest, background: BackgroundTasks) -> dict[str, Any]:
    try:
        strategy = strategies.load(req.strategy_name)
    except strategies.StrategyError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    for field in ("start_date", "end_date"):
        try:
            datetime.fromisoformat(getattr(req, field))
        except ValueError as exc:
            raise HTTPException(
                status_code=400, detail=f"{field} must be an ISO date: {exc}"
            ) from exc
    if req.start_date >= req.end_date:
        raise HTTPException(status_code=400, detail="start_date must be before end_date")

    with db.engine().connect() as conn:
        candidates = [
            _worker_row(r)
            for r in conn.execute(
                sa.select(db.workers)
                .where(db.workers.c.worker_type == "backtesting")
                .order_by(db.workers.c.last_seen_at.desc())
            ).all()
        ]
    candidates = [w for w in candidates if w["status"] == "available"]
    if not candidates:
        raise HTTPException(
            status_code=503, detail="no backtesting worker is registered and available"
        )

    operation_id = f"op_backtest_{uuid.uuid4().hex[:16]}"
    params = req.model_dump()
    with db.engine().begin() as conn:
        conn.execute(
            sa.insert(db.operations).values(
                operation_id=operation_id,
                operation_type="backtest",
                status="pending",
                params=params,
                created_at=sa.func.now(),
                updated_at=sa.func.now(),
            )
        )
    job = {
        **params,
        "operation_id": operation_id,
        "strategy": strategy,
        "callback_url": f"{PUBLIC_URL}/api/v1/operations/{operation_id}/result",
    }
    background.add_task(_dispatch, operation_id, job, candidates)
    return {"success": True, "operation_id": operation_id, "status": "pending"}


def _dispatch(operation_id: str, job: dict[str, Any], candidates: list[dict[str, Any]]) -> None:
    """Hand the job to the first worker that accepts it; mark the operation failed otherwise."""
    errors = []
    for worker in candidates:
        url = f"{worker['endpoint_url']}/backtests/run"
        try:
            resp = httpx.post(url, json=job, timeout=DISPATCH_TIMEOUT_S)
        except httpx.HTTPError as exc:
            errors.append(f"{worker['worker_id']}: {type(exc).__name__}: {exc}")
            continue
        if resp.status_code in (200, 202):
            with db.engine().begin() as conn:
                # Only pending -> running: a fast worker may already have reported the result.
                conn.execute(
                    sa.update(db.operations)
                    .where(
                        db.operations.c.operation_id == operation_id,
                        db.operations.c.status == "pending",
                    )
                    .values(
                        status="running", worker_id=worker["worker_id"], updated_at=sa.func.now()
                    )
                )
            log.info("operation %s dispatched to %s", operation_id, worker["worker_id"])
            return
        errors.append(f"{worker['worker_id']}: HTTP {resp.status_code}: {resp.text[:200]}")
    log.warning("operation %s could not be dispatched: %s", operation_id, errors)
    _finish(operation_id, "failed", None, "no worker accepted the job: " + "; ".join(errors), None)


def _finish(
    operation_id: str, status: str, result: Any, error: str | None, worker_id: str | None
) -> int:
    values: dict[str, Any] = {
        "status": status,
        "result": result,
        "error": error,
        "updated_at": sa.func.now(),
    }
    if worker_id:
        values["worker_id"] = worker_id
    with db.engine().begin() as conn:
        return conn.execute(
            sa.update(db.operations)
            .where(
                db.operations.c.operation_id == operation_id,
                db.operations.c.status.in_(("pending", "running")),
            )
            .values(**values)
        ).rowcount


# ---------------------------------------------------------------------- operations
@app.get("/api/v1/operations/{operation_id}")
def get_operation(operation_id: str) -> dict[str, Any]:
    with db.engine().connect() as conn:
        row = conn.execute(
            sa.select(db.operations).where(db.operations.c.operation_id == operation_id)
        ).first()
    if row is None:
        raise HTTPException(status_code=404, detail=f"operation {operation_id!r} not found")
    return {
        "success": True,
        "data": {
            "operation_id": row.operation_id,
            "operation_type": row.operation_type,
            "status": row.status,
            "params": row.params,
            "result": row.result,
            "error": row.error,
            "worker_id": row.worker_id,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
        },
    }


@app.post("/api/v1/operations/{operation_id}/result")
def report_result(operation_id: str, report: OperationResult) -> dict[str, Any]:
    if not _finish(operation_id, report.status, report.result, report.error, report.worker_id):
        with db.engine().connect() as conn:
            exists = conn.execute(
                sa.select(db.operations.c.status).where(
                    db.operations.c.operation_id == operation_id
                )
            ).scalar()
        if exists is None:
            raise HTTPException(status_code=404, detail=f"operation {operation_id!r} not found")
        raise HTTPException(
            status_code=409, detail=f"operation {operation_id!r} is already {exists}"
        )
    log.info("operation %s %s", operation_id, report.status)
    return {"success": True}
