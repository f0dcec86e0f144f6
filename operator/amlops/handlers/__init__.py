"""kopf glue: the only package that imports kopf. Thin handlers; the logic lives in ``reconcile``."""
