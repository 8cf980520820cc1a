"""`nightwarden listen`: the resident listener as a job. The runner holds its lock (a second
listener exits 75), records the run and decides the exit code; SIGTERM ends it cleanly,
SIGHUP reloads the configuration and the lists."""

from __future__ import annotations

from nightwarden.lib.runner import Result

NAME = "listen"


def add_arguments(parser) -> None:
    parser.add_argument("--mode", choices=["connect", "advanced"], help="override listener.mode")
    parser.add_argument("--no-mail", action="store_true", help="no alert digests")


def run(ctx) -> Result:
    from nightwarden.lib.blocks import BlockManager
    from nightwarden.lib.firewall import open_backend
    from nightwarden.lib.state import State

    from .loop import Listener

    def make_blocks(config):
        return BlockManager(
            config, State(config.db_path, dry_run=ctx.dry_run), open_backend(config, dry_run=ctx.dry_run)
        )

    ctx.blocks.ensure_ready()  # after a reboot: the base rules and every block
    listener = Listener(
        ctx.config,
        make_blocks,
        mail=not ctx.args.no_mail,
        mode=ctx.args.mode or ctx.config.listener.mode,
        reload_from=(getattr(ctx.args, "config", None), getattr(ctx.args, "sandbox", None)),
    )
    listener.install_signals()
    listener.open()
    scheduler = None
    if ctx.config.schedule.in_listener:  # the only resident process runs the jobs too
        from nightwarden.lib import schedule

        scheduler = schedule.scheduler(ctx.config)
        scheduler.start()
        ctx.log.info("scheduler in the listener: %d jobs", len(scheduler.get_jobs()))
    try:
        listener.serve()
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        listener.shutdown()
    return Result(0, f"stopped after {listener.hits} probe(s), {listener.responder.blocked} block(s)")
