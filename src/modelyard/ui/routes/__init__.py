"""The dashboard's routes, one module per noun."""
