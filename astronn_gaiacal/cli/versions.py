"""``astronn-gaiacal versions``."""
from .._versions import show_versions

NAME = "versions"
HELP = ("print installed and supported versions of every dependency, the optional ones included, "
        "flagging any that is missing or outside its supported range")


def add_arguments(parser):
    pass


def run(args):
    show_versions()
    return 0
