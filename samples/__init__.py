"""Bundled sample photos (see README.md here for their sources and licences)."""
