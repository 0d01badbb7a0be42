"""Placeholder: `hf-qkdelay` subcommand module (`compare`), filled in by its owner."""


def register(subparsers):
    parser = subparsers.add_parser("compare", help="(not yet implemented)")
    parser.set_defaults(func=lambda args: (_ for _ in ()).throw(NotImplementedError("compare")))
