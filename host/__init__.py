"""Host side: the protocol driver, transports, sessions, programmers and power meters."""

if __name__ != "tern_fpga.host":
    # The folder host/ is the subpackage tern_fpga.host: imported by its bare name it would
    # give a second copy of every module (two parameter classes, two error types).
    raise ImportError(f"import tern_fpga.host, not {__name__}: the folder host/ is installed "
                      f"as tern_fpga.host (run `make setup`, or `pip install -e .`)")

