"""Placeholder: `hf-qkdelay` subcommand module (`evaluate`), filled in by its owner."""


def register(subparsers):
    parser = subparsers.add_parser("eval", help="(not yet implemented)")
    parser.set_defaults(func=lambda args: (_ for _ in ()).throw(NotImplementedError("evaluate")))
