"""Worked examples that ship with flowcert: trained models and their data (``--model digits``)."""
