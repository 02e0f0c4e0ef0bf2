"""Reading and minimally editing docker compose files, byte for byte."""
