"""Worker API (WORKER_TYPE=backtesting|training). Needs torch; never touches the database.

Registration with the backend runs in a background thread, forever: the backend may
start before its database is migrated, so the worker retries every REGISTER_RETRY_S
seconds, then sends heartbeats and registers again when the backend forgets it
(heartbeat answered 404/409). /health never depends on registration.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import torch
from fastapi import BackgroundTasks, FastAPI, HTTPException
from pydantic import BaseModel, Field

from . import __version__
from .backtest import run_backtest

log = logging.getLogger("ktrdr_canary.worker")

WORKER_TYPE = os.environ.get("WORKER_TYPE", "backtesting")
if WORKER_TYPE not in ("backtesting", "training"):
    raise SystemExit(f"WORKER_TYPE must be backtesting or training, not {WORKER_TYPE!r}")
PORT = int(os.environ.get("PORT", "5003"))
WORKER_ID = os.environ.get("WORKER_ID") or f"{WORKER_TYPE}-{socket.gethostname()}"
ENDPOINT_URL = os.environ.get("WORKER_ENDPOINT_URL") or f"http://{socket.gethostname()}:{PORT}"
BACKEND_URL = os.environ.get("BACKEND_URL", "http://backend:8000").rstrip("/")
REGISTER_RETRY_S = float(os.environ.get("REGISTER_RETRY_S", "2"))
HEARTBEAT_S = float(os.environ.get("HEARTBEAT_S", "5"))


class Registration:
    """Background registration + heartbeat loop."""

    def __init__(self) -> None:
        self.registered = threading.Event()
        self.stop = threading.Event()
        self.attempts = 0
        self.last_error: str | None = None

    def run(self) -> None:
        with httpx.Client(base_url=BACKEND_URL, timeout=5) as client:
            while not self.stop.is_set():
                try:
                    if self.registered.is_set():
                        self.stop.wait(HEARTBEAT_S)
                        self._heartbeat(client)
                    elif not self._register(client):
                        self.stop.wait(REGISTER_RETRY_S)
                except Exception as exc:  # the loop must never die: log, wait, go on
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("registration loop error")
                    self.stop.wait(REGISTER_RETRY_S)

    def _register(self, client: httpx.Client) -> bool:
        self.attempts += 1
        payload = {"worker_id": WORKER_ID, "worker_type": WORKER_TYPE, "endpoint_url": ENDPOINT_URL}
        try:
            resp = client.post("/api/v1/workers/register", json=payload)
        except httpx.HTTPError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
        else:
            if resp.status_code == 200:
                self.registered.set()
                self.last_error = None
                log.info(
                    "registered with %s as %s after %d attempt(s)",
                    BACKEND_URL,
                    WORKER_ID,
                    self.attempts,
                )
                return True
            self.last_error = f"HTTP {resp.status_code}: {resp.text[:200]}"
        if self.attempts == 1 or self.attempts % 15 == 0:
            log.info(
                "registration attempt %d failed (%s); retrying every %gs",
                self.attempts,
                self.last_error,
                REGISTER_RETRY_S,
            )
        return False

    def _heartbeat(self, client: httpx.Client) -> None:
        try:
            resp = client.post(f"/api/v1/workers/{WORKER_ID}/heartbeat")
        except httpx.HTTPError as exc:
            self.last_error = f"heartbeat: {type(exc).__name__}: {exc}"
            return
        if resp.status_code in (404, 409):
            # The backend forgot us (database reset, re-created schema): register again.
            log.warning(
                "backend no longer knows %s (HTTP %d): registering again",
                WORKER_ID,
                resp.status_code,
            )
            self.registered.clear()
            self.attempts = 0


registration = Registration()


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    thread = threading.Thread(target=registration.run, name="registration", daemon=True)
    thread.start()
    yield
    registration.stop.set()


app = FastAPI(title=f"ktrdr {WORKER_TYPE} worker (canary)", version=__version__, lifespan=lifespan)


@app.get("/health")
def health() -> dict[str, Any]:
    return {
        "status": "healthy",
        "worker_type": WORKER_TYPE,
        "worker_id": WORKER_ID,
        "torch": torch.__version__,
        "registered": registration.registered.is_set(),
        "registration_error": registration.last_error,
        "version": __version__,
    }


# ----------------------------------------------------------------------- backtests
class BacktestJob(BaseModel):
    operation_id: str
    strategy: dict[str, Any]
    symbol: str
    timeframe: str
    start_date: str
    end_date: str
    initial_capital: float = Field(gt=0)
    callback_url: str


@app.post("/backtests/run", status_code=202)
def accept_backtest(job: BacktestJob, background: BackgroundTasks) -> dict[str, Any]:
    if WORKER_TYPE != "backtesting":
        raise HTTPException(status_code=409, detail=f"{WORKER_ID} is a {WORKER_TYPE} worker")
    background.add_task(_execute, job)
    return {"accepted": True, "operation_id": job.operation_id, "worker_id": WORKER_ID}


def _execute(job: BacktestJob) -> None:
    started = time.monotonic()
    try:
        result = run_backtest(
            job.strategy,
            symbol=job.symbol,
            timeframe=job.timeframe,
            start_date=job.start_date,
            end_date=job.end_date,
            initial_capital=job.initial_capital,
        )
        result["duration_s"] = round(time.monotonic() - started, 3)
        report: dict[str, Any] = {"status": "completed", "result": result, "worker_id": WORKER_ID}
    except Exception as exc:
        log.exception("operation %s failed", job.operation_id)
        report = {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "worker_id": WORKER_ID,
        }
    for attempt in range(1, 11):
        try:
            resp = httpx.post(job.callback_url, json=report, timeout=5)
            if resp.status_code < 500:
                log.info(
                    "operation %s reported %s (HTTP %d)",
                    job.operation_id,
                    report["status"],
                    resp.status_code,
                )
                return
        except httpx.HTTPError as exc:
            log.warning("reporting %s failed (attempt %d): %s", job.operation_id, attempt, exc)
        time.sleep(min(2.0, 0.2 * attempt))
    log.error("gave up reporting operation %s", job.operation_id)


# ------------------------------------------------------------------------ training
class TrainingJob(BaseModel):
    epochs: int = Field(default=200, ge=1, le=5000)
    seed: int = 0


@app.post("/training/run")
def run_training(job: TrainingJob) -> dict[str, Any]:
    """Tiny synchronous training run: fit a linear model to noisy synthetic data."""
    if WORKER_TYPE != "training":
        raise HTTPException(status_code=409, detail=f"{WORKER_ID} is a {WORKER_TYPE} worker")
    gen = torch.Generator().manual_seed(job.seed)
    x = torch.randn(256, 4, generator=gen)
    true_w = torch.tensor([[0.5], [-1.0], [2.0], [0.0]])
    y = x @ true_w + 0.05 * torch.randn(256, 1, generator=gen)
    model = torch.nn.Linear(4, 1)
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.tensor(0.0)
    for _ in range(job.epochs):
        optim.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optim.step()
    return {
        "success": True,
        "final_loss": float(loss),
        "epochs": job.epochs,
        "torch_version": torch.__version__,
    }
