"""The local environment: stand-ins for the Azure services georollout uses.

The product (`shared/`, `function_app.py`) never imports this package.
"""
