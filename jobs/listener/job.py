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
    followers = Followers(make_blocks, listener.responder.submit, ctx.dry_run, not ctx.args.no_mail)
    listener.on_reload = followers.restart
    listener.install_signals()
    listener.open()
    followers.start(ctx.config)
    metrics_server = _serve_metrics(ctx)
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
        followers.shutdown()
        listener.shutdown()
        if metrics_server is not None:
            metrics_server.shutdown()
    return Result(0, f"stopped after {listener.hits} probe(s), {listener.responder.blocked} block(s)")


def _serve_metrics(ctx):
    """metrics.listen_port: the figures on 127.0.0.1 for Prometheus to scrape (read from the
    state database at each scrape); trouble is said, the listener goes on."""
    if not ctx.config.metrics.listen_port:
        return None
    from nightwarden.lib import metrics
    from nightwarden.lib.errors import NightwardenError
    from nightwarden.lib.state import State

    try:
        server = metrics.serve(ctx.config, lambda: State(ctx.config.db_path, dry_run=True))
    except (NightwardenError, OSError) as e:
        ctx.log.warning("metrics not served: %s", e)
        return None
    ctx.log.info("metrics on http://127.0.0.1:%d/metrics", ctx.config.metrics.listen_port)
    return server


class Followers:
    """What the listener follows besides its ports: the log sources (logins.follow) and the
    quarantine's directories (quarantine.follow), each in a thread of its own; restarted with
    the new configuration on SIGHUP."""

    def __init__(self, make_blocks, submit, dry_run: bool, mail: bool):
        self.make_blocks = make_blocks
        self.submit = submit
        self.dry_run = dry_run
        self.mail = mail
        self.threads: list = []
        import threading

        self.lock = threading.Lock()  # one restart at a time

    def start(self, config) -> None:
        from nightwarden.lib.logsetup import get

        from .messages import LoginAlerts, Mails

        log = get("listener")
        if config.logins.follow == "listener":
            from nightwarden.jobs.login_failures.follow import LogFollower

            send = (
                (lambda items: self.submit(LoginAlerts(tuple(items)))) if self.mail else (lambda items: None)
            )
            mails = (lambda items: self.submit(Mails(tuple(items)))) if self.mail else (lambda items: None)
            self.threads.append(LogFollower(config, self.make_blocks, send, self.dry_run, mails))
        if config.connections.limit:
            from nightwarden.jobs.connections.follow import ConnectionWatcher

            mails = (lambda items: self.submit(Mails(tuple(items)))) if self.mail else (lambda items: None)
            self.threads.append(ConnectionWatcher(config, self.make_blocks, mails, self.dry_run))
        if config.fleet.servers:
            from nightwarden.jobs.fleet.link import FleetLink

            self.threads.append(FleetLink(config, self.make_blocks, self.dry_run))
        if config.quarantine.follow:
            from nightwarden.jobs.quarantine.follow import QuarantineFollower

            self.threads.append(QuarantineFollower(config, self.dry_run, self.mail))
        for t in self.threads:
            t.start()
        for t in self.threads:  # READY=1 means following too: each source read once
            t.ready.wait(5.0)
        if self.threads:
            log.warning("following: %s", ", ".join(t.name for t in self.threads))

    def stop(self) -> None:
        for t in self.threads:
            t.stop()
        self.threads = []

    def shutdown(self) -> None:
        with self.lock:  # after a restart that is still going
            self.stop()

    def restart(self, config) -> None:
        """On SIGHUP, in a thread of its own: the receive loop does not wait for the old
        followers' last commit or the new ones' first read."""
        import threading

        def again() -> None:
            with self.lock:
                self.stop()
                self.start(config)

        threading.Thread(target=again, name="follow-reload", daemon=True).start()


def status(config, state) -> dict:
    """For `nightwarden status`: what the listener watches and follows (from the configuration)."""
    lcfg = config.listener
    following = [
        name
        for name, on in (
            ("the log sources", config.logins.follow == "listener"),
            ("the quarantine's directories", config.quarantine.follow),
            ("the fleet's decisions", bool(config.fleet.servers)),
        )
        if on
    ]
    return {
        "mode": lcfg.mode,
        "bait ports": f"{len(lcfg.tcp_ports)} tcp, {len(lcfg.udp_ports)} udp"
        if lcfg.mode == "connect"
        else "raw sockets",
        "follows": ", ".join(following) or "nothing (logins.follow, quarantine.follow)",
    }
