"""The service layer: use cases (intake, reconcile, status, health) composing the domain and the adapters."""
