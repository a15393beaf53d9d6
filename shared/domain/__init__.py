"""The pure domain: rollout model, state machine, targets, names and event catalogue (no I/O)."""
