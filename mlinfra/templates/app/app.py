#!/usr/bin/env python3
"""__PREFIX__: an ML platform composed by mlinfra from config/platform.yaml.

    cdk synth -c mlinfra:env=dev        # or local, prod
"""

from mlinfra import create_app

app, platform = create_app()
app.synth()
