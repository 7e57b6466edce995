"""One reasoning trace: ``reasoning`` computes it (per-token values, step importance,
attention, the answer's attention to the image), ``view`` draws it (HTML and images)."""
