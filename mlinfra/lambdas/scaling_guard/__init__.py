"""A Lambda handler folder, shipped alone as its function's asset (a package so the import contracts see it)."""
