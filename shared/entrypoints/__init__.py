"""Entrypoints: translate a trigger's input into one service call and its result back."""
