"""Servers that the serving benchmark runs beside Modelyard, each in its own process."""
