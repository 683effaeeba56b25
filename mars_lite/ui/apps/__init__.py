"""Notebooks shipped with the package and served by Voilà (``mars-lite demo``)."""
