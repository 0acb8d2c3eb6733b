#!/usr/bin/env python3
"""The reference mlinfra platform: every stack of one environment, composed from config/platform.yaml.

    cdk synth -c mlinfra:env=prod          # or dev, local
"""

from mlinfra.app import create_app

app, _platform = create_app()
app.synth()
