"""Placeholder: `hf-qkdelay` subcommand module (`plot`), filled in by its owner."""


def register(subparsers):
    parser = subparsers.add_parser("plot", help="(not yet implemented)")
    parser.set_defaults(func=lambda args: (_ for _ in ()).throw(NotImplementedError("plot")))
