"""One module per step, each with a pure `diff` (desired + observed -> changes) and an `apply`.

Apply order is fixed: compose_file, images, services (migrations and checks come later).
"""
