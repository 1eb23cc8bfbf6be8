"""Command line: `pcscf-alg run --config FILE`, `check-config FILE`, `sdp ...`."""

from __future__ import annotations

import argparse
import logging
import sys

from pcscf_alg import __version__
from pcscf_alg.config import Config, load_config
from pcscf_alg.errors import ConfigError


def _validate_all(cfg: Config) -> None:
    """Validate the sections owned by other layers too, so check-config catches every error."""
    try:
        from pcscf_alg.agw.config import parse_agw_config
    except ImportError:  # pragma: no cover
        pass
    else:
        parse_agw_config(cfg.agw, cfg.file)
    try:
        from pcscf_alg.policy import load_policy
    except ImportError:  # pragma: no cover
        pass
    else:
        load_policy(cfg.policy, cfg.file)
    from pcscf_alg.li import load_sink

    sink = load_sink(cfg.li, cfg.file)
    close = getattr(sink, "close", None)
    if callable(close):
        close()


def _load(path: str | None) -> Config:
    cfg = load_config(path)
    _validate_all(cfg)
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pcscf-alg", description=__doc__)
    p.add_argument("--version", action="version", version=f"pcscf-alg {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the daemon")
    r.add_argument("--config", "-c", help="YAML config (default: the embedded loopback config)")
    c = sub.add_parser("check-config", help="validate a config file and exit")
    c.add_argument("file")
    try:
        from pcscf_alg import sdp_cli
    except ImportError:  # pragma: no cover
        sdp_cli = None  # type: ignore[assignment]
    if sdp_cli is not None:
        sdp_cli.add_subparser(sub)
    args = p.parse_args(argv)

    if args.cmd == "check-config":
        try:
            _load(args.file)
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
        print(f"{args.file}: OK")
        return 0
    if args.cmd == "run":
        try:
            cfg = _load(args.config)
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
        logging.basicConfig(
            level=cfg.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        from pcscf_alg.app import run

        run(cfg)
        return 0
    if args.cmd == "sdp" and sdp_cli is not None:
        return int(sdp_cli.run(args))
    p.error(f"unknown command {args.cmd}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
