"""Tests of reconciler.compose.edit: the byte-for-byte corpus and targeted behaviours."""
