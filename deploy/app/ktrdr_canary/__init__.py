"""ktrdr canary stand-in: a small but real backend + workers pair.

Roles (selected by ``python -m ktrdr_canary <role>``):

* ``backend``  -- FastAPI orchestrator: workers registry, backtest operations, Postgres storage.
                  Never imports torch, so it runs on the slim backend image.
* ``worker``   -- FastAPI worker (WORKER_TYPE=backtesting|training); imports torch.

Importing this package is cheap on purpose: no third-party imports here.
"""

__version__ = "0.3.0"
