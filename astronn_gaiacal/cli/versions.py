"""``astronn-gaiacal versions``."""
NAME = "versions"
HELP = "print installed and supported dependency versions"


def add_arguments(parser):
    pass


def run(args):
    from .. import show_versions

    show_versions()
    return 0
