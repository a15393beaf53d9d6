"""A local Azure Functions host that runs a Python v2-model `function_app.py` in-process.

Run it with `python -m devenv.host --app-dir DIR --port N`, or start it from code
with `devenv.host.launcher.start_functions_host`.
"""
