"""Residual-student distillation in torch (teacher flow maps, students, validation)."""
