"""The ``modelyard`` command line: a thin shell over :mod:`modelyard.client`.

Entry point: :func:`modelyard.cli.main.main`. Commands build their SDK client through
:func:`modelyard.cli._context.make_client`, the one seam tests replace.
"""

__all__: list[str] = []
