"""Readers and writers: the native recording format and the DHP19 converter."""
