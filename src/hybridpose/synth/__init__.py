"""Synthetic DHP19-like data: motions, body, rendering, event simulation, generation."""
