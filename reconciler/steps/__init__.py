"""One module per step, each with its own facts: `observe` (snapshot -> its facts), a pure `diff`
(desired + facts -> changes) and `apply`, exported as `STEP` (the shape is in `contract.py`).

Apply order is fixed: compose_file, images, services, migrations, checks (`reconcile.STEPS`).
"""
