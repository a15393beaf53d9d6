"""georollout: replication-aware, multi-region rollouts of model containers on Azure.

The package holds the product: a pure domain at the centre, intake parsing, a
service layer and adapters around it.
"""
