"""The one compiled part: the sshd scan (jobs/login_failures/_sshscan.c). optional=True: without a compiler
the package installs anyway and uses the same rules through regular expressions."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "nightwarden.jobs.login_failures._sshscan",
            ["jobs/login_failures/_sshscan.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
