"""The emulator process the local deploy starts: ``python -m mlinfra.local_aws.server_main --token T --ready FILE``.

It is moto's own server (the same WSGI application ``moto_server`` runs) with three additions:

- moto's resource creation records each resource's outcome (:mod:`mlinfra.local_aws.emulator_hooks`);
- the CloudFormation models of :mod:`mlinfra.local_aws.api_models` are registered before the first request, so
  types moto's CloudFormation lacks are created through moto's service backends (reported "created (API)");
- it binds port 0 itself and writes the port it got to ``--ready`` only once it is listening: no race on a
  "free" port another program could take, so the deploy never talks to a server it did not start;
- ``GET /__mlinfra_local__/identity`` answers ``{"pid", "token"}``: the deploy and ``destroy-local`` check the
  token they were given before they use or stop the server; ``GET /__mlinfra_local__/api-resources`` lists
  what the API models created or were refused.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

IDENTITY_PATH = "/__mlinfra_local__/identity"
#: what :mod:`mlinfra.local_aws.api_models` created (or was refused), as JSON
API_RECORDS_PATH = "/__mlinfra_local__/api-resources"
#: ``POST {"account": "..."}``: the account every later request lands in (MOTO_ACCOUNT_ID)
ACCOUNT_PATH = "/__mlinfra_local__/account"
#: what moto did with each resource (see :mod:`mlinfra.local_aws.emulator_hooks`)
OUTCOMES_PATH = "/__mlinfra_local__/outcomes"


def _identity_app(app: Any, token: str) -> Any:
    body = json.dumps({"pid": os.getpid(), "token": token}).encode()

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO")
        if path == ACCOUNT_PATH and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            account = json.loads(environ["wsgi.input"].read(length) or b"{}").get("account", "")
            if not (account.isdigit() and len(account) == 12):
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [f"account must be 12 digits, got: {account!r}".encode()]
            os.environ["MOTO_ACCOUNT_ID"] = account
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
            return [b"{}"]
        if path in (IDENTITY_PATH, API_RECORDS_PATH, OUTCOMES_PATH):
            from mlinfra.local_aws.api_models import records_json
            from mlinfra.local_aws.emulator_hooks import outcomes_json

            data = {IDENTITY_PATH: lambda: body, API_RECORDS_PATH: records_json, OUTCOMES_PATH: outcomes_json}[path]()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        return app(environ, start_response)

    return wsgi


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlinfra-local-server")
    parser.add_argument("--token", required=True)
    parser.add_argument("--ready", type=Path, required=True, help="file that receives the port once listening")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    # Its state is in memory only: on SIGTERM/SIGINT exit at once, whatever request threads are doing.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))

    from werkzeug.serving import make_server

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

    from mlinfra.local_aws import api_models, emulator_hooks

    api_models.register()
    emulator_hooks.install()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(args.host, 0, _identity_app(app, args.token), threaded=True,
                         request_handler=MotoRequestHandler)
    port = server.server_port
    # moto's Step Functions executor calls the other services back on MOTO_PORT.
    os.environ["MOTO_PORT"] = str(port)
    tmp = args.ready.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(args.ready)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
