"""ecgnb: a notebook-first workbook for self-supervised learning on ECG."""
__version__ = "0.1.0"
