"""Exporters from OpenPCDet results to benchmark submission formats."""
